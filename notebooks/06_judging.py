# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   language_info:
#     codemirror_mode:
#       name: ipython
#       version: 3
#     file_extension: .py
#     mimetype: text/x-python
#     name: python
#     nbconvert_exporter: python
#     pygments_lexer: ipython3
#     version: 3.11.7
# ---

# %% [markdown]
# # 06 Judging: pairwise win rates and 1-10 scores from an LLM judge
#
# The judge compares each model's answer with the baseline's (or every pair of models) without a reference, in both
# answer orders; a question counts as a tie when either order says tie or the two orders disagree (FastChat's rule).
# It also grades every answer from 1 to 10. Coding and math questions get the reference-guided prompts. Verdicts are
# parsed from `[[A]]` / `[[B]]` / `[[C]]` and `Rating: [[N]]`, or come as structured outputs; an unreadable verdict is
# asked again, then recorded as an error, never as a win or a loss.
#
# Besides the win rates, the tables give what the published tools do not: bootstrap 95% intervals over questions, the
# judge's position consistency (both orders agree) and its share of first-position wins.
#
# **Reads**: `answers/*.jsonl` (from 05), the benchmark questions and references.
# **Writes**: `judgments/<judge>_pair.jsonl`, `judgments/<judge>_single.jsonl` (FastChat formats), `judgments/*.csv`
# tables, `figures/06_win_tie_loss.pdf` and `.png`, `figures/06_scores.pdf` and `.png`.

# %% tags=["parameters"]
config_path = None  # None: configs/tiny.yaml
run_dir = None  # None: runs/<config name>
overrides = {}  # dotted keys, e.g. {"judge.baseline": null}

# %%
from jinstruct import judge
from jinstruct.run import Stage

st = Stage.open("06_judging", config_path, run_dir, overrides)
questions, references = judge.load_benchmark(st.cfg.answer.benchmark, st.cfg.answer.per_category)
client = st.client(st.cfg.judge.endpoint)

# %% [markdown]
# ## A worked example: one game, judged in both orders
#
# The first game of the run: the judge prompt as sent in order 1 (model_1 as assistant A), then the judge's reply
# in each order and the winner it names, then how the two combine. A judge that names assistant A both times has
# named two different models: it preferred a position, and the game is a tie. Only a model that wins in both orders
# wins the game.

# %%
judge.example_game(st.cfg.judge, client, questions, references, st.layout.answers, seed=st.cfg.seed)

# %% [markdown]
# ## Every game and every answer
#
# The estimate says what will be sent (answers cached from the example above and from earlier runs cost nothing);
# the summary says what was judged, re-asked, or recorded as an error.

# %%
result = judge.run_judging(st.cfg.judge, client, questions, references, st.layout.answers, st.dir(st.layout.judgments),
                           seed=st.cfg.seed, superseded_dir=st.layout.superseded / "judgments")
tables = judge.save_tables(result.tables, st.layout.judgments)
st.report_errors(result.errors, "judgments recorded as errors (`run --retry-errors` judges them again)")

# %% [markdown]
# ## Win rates (with bootstrap 95% intervals over questions)
#
# `win_rate` counts ties as half; the interval shows how much it could move with another draw of questions. With few
# questions per category the intervals are wide: read the overall row first.

# %%
result.tables.get("pairwise")

# %% [markdown]
# The judge's own behaviour: `position_consistency` is the share of games where both orders agree (a careful judge is
# near 1), `first_position_win_share` the share of decided verdicts won by whichever answer came first (0.5 is fair).

# %%
result.tables.get("diagnostics")

# %% [markdown]
# Each bar splits one category's games into wins, ties and losses of the model against the baseline; the dotted line
# is 50%.

# %%
if "pairwise_by_category" in result.tables:
    fig = judge.win_tie_loss_figure(result.tables["pairwise_by_category"], result.tables["pairwise"],
                                    baseline=st.cfg.judge.baseline)
    st.save_figure(fig, "06_win_tie_loss")

# %% [markdown]
# ## Scores 1-10
#
# The mean grade per model with its bootstrap interval. The axis starts at 1, the lowest grade there is.

# %%
result.tables.get("single")

# %%
if "single_by_category" in result.tables:
    st.save_figure(judge.score_figure(result.tables["single_by_category"], result.tables["single"]), "06_scores")

# %% [markdown]
# ## What the judging cost

# %%
print(client.ledger)
