# %% [markdown]
# # Quickstart: the pipeline from Python, as a notebook reads it
#
# The same steps as `make download train predict submit`, called through `pipeline.flow`; offline
# here on the generated demo competition. For a real one, set `competition` (and on Kaggle the
# paths are set for you): `load_config(overrides={"competition": "dogs-vs-cats-redux-kernels-edition"})`.
# Run it from the repository root: `python examples/quickstart.py` (about a minute on a laptop CPU).

# %%
from pathlib import Path

from pipeline import flow
from pipeline.competitions import get_competition
from pipeline.config import load_config
from pipeline.demo.generate import generate_competition

served = Path("data/_quickstart")  # what `kaggle competitions download` would have written
generate_competition(
    get_competition("dogs-vs-cats-demo"), served / "dogs-vs-cats-demo", train_per_class=100, test_size=40
)
config = load_config("demo", {"paths.input_root": str(served)})

# %% The four lines
flow.index(config)  # unpack, validate every image, index; rejects.csv lists what was set aside
run = flow.train(config)  # stratified folds of the two-phase recipe; the run's report
submission = flow.predict(config)  # every fold x TTA views, post-processed on OOF -> a validated CSV
flow.classify(config, [Path("data/dogs-vs-cats-demo/test/1.jpg")])  # what is in this photo

# %% What came out
print(f"Run folder: {run.path}\nSubmission: {submission}")
