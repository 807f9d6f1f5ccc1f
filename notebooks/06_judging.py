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
from jinstruct.answering import load_benchmark
from jinstruct.judge_figures import score_figure, win_tie_loss_figure
from jinstruct.judging import run_judging, save_tables
from jinstruct.stage import Stage

st = Stage.open("06_judging", config_path, run_dir, overrides)
questions, references = load_benchmark(st.cfg.answer.benchmark, st.cfg.answer.per_category)
client = st.client(st.cfg.judge.endpoint)
result = run_judging(st.cfg.judge, client, questions, references, st.dir("answers"), st.dir("judgments"),
                     seed=st.cfg.seed)
save_tables(result.tables, st.dir("judgments"))
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
    fig = win_tie_loss_figure(result.tables["pairwise_by_category"], result.tables["pairwise"],
                              baseline=st.cfg.judge.baseline)
    fig.savefig(st.path("figures", "06_win_tie_loss.png"), dpi=120, bbox_inches="tight")
    display(fig)

# %% [markdown]
# ## Scores 1-10

# %%
result.tables.get("single")

# %%
if "single_by_category" in result.tables:
    fig = score_figure(result.tables["single_by_category"], result.tables["single"])
    fig.savefig(st.path("figures", "06_scores.png"), dpi=120, bbox_inches="tight")
    display(fig)

# %% [markdown]
# ## What the judging cost

# %%
print(client.ledger)
