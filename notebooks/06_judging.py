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
# tables, `figures/06_win_tie_loss.png`, `figures/06_scores.png`.

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
result = judge.run_judging(st.cfg.judge, client, questions, references, st.layout.answers, st.dir(st.layout.judgments),
                           seed=st.cfg.seed, superseded_dir=st.layout.superseded / "judgments")
judge.save_tables(result.tables, st.layout.judgments)
st.report_errors(result.errors, "judgments recorded as errors (`run --retry-errors` judges them again)")
print(result.pairwise)
print(result.single)

# %% [markdown]
# ## Win rates (with bootstrap 95% intervals over questions)

# %%
result.tables.get("pairwise")

# %%
result.tables.get("diagnostics")

# %%
if "pairwise_by_category" in result.tables:
    fig = judge.win_tie_loss_figure(result.tables["pairwise_by_category"], result.tables["pairwise"],
                                    baseline=st.cfg.judge.baseline)
    display(st.save_figure(fig, "06_win_tie_loss"))

# %% [markdown]
# ## Scores 1-10

# %%
result.tables.get("single")

# %%
if "single_by_category" in result.tables:
    display(st.save_figure(judge.score_figure(result.tables["single_by_category"], result.tables["single"]), "06_scores"))

# %% [markdown]
# ## What the judging cost

# %%
print(client.ledger)
