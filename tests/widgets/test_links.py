"""Linked views: a click in one widget points another at the same prompt and cell."""
import pytest

import actwidgets as aw

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"


def test_a_heads_grid_click_shows_that_heads_pattern(tiny_llama):
    grid = aw.PatchingGrid(tiny_llama, CLEAN, CORRUPTED, answer=(" Mary", " John"), site="heads").wait(300)
    att = aw.Attention(tiny_llama, "another prompt entirely").wait()
    grid.link(att)
    grid.selected = {"row": 2, "col": 3}  # as a click on layer 2, head 3
    att.wait()
    assert att.status == "done", att.error
    assert att.prompt == CLEAN and list(att.head) == [2, 3] and list(att.pattern_head) == [2, 3]
    expected = aw.attention.attention_patterns(tiny_llama, CLEAN, head=(2, 3))
    assert att.data.pattern.tolist() == expected.pattern.tolist()


def test_a_closed_view_is_let_go_not_pointed(tiny_llama):
    """A view closed (its cell re-run) is on no screen: a click on the grid must not run it
    again, nor keep it alive. Its results, even a job's that ends after the close, are dropped."""
    grid = aw.PatchingGrid(tiny_llama, CLEAN, CORRUPTED, answer=(" Mary", " John"), site="heads").wait(300)
    att = aw.Attention(tiny_llama, "another prompt entirely").wait()
    grid.link(att)
    att.close()
    grid.selected = {"row": 2, "col": 3}
    assert att.prompt == "another prompt entirely" and att.idle and grid._linked == []
    att.memo.put("late", 1)  # what a job still finishing after close() writes
    att._every.put("late", 1)  # (every head's patterns: up to 64 MB)
    assert att.memo.get("late") is None and att._every.get("late") is None


def test_a_token_grid_click_shows_where_that_token_looks(tiny_llama):
    grid = aw.PatchingGrid(tiny_llama, CLEAN, CORRUPTED, answer=(" Mary", " John"), site="resid").wait(300)
    att, lens = aw.Attention(tiny_llama, CLEAN).wait(), aw.LogitLens(tiny_llama, "x").wait()
    grid.link(att).link(lens)
    grid.selected = {"row": 1, "col": 9}  # layer 1, the swapped name
    att.wait(), lens.wait()
    assert att.query_index == 9 and att.data.tokens[9] == " John" == grid.tokens[9]
    assert lens.prompt == CLEAN and lens.selected == {"row": 2, "col": 9}  # the lens's row 0 is the embedding


def test_a_dla_head_click_shows_that_heads_pattern_from_the_attributed_token(tiny_llama):
    dla = aw.LogitAttribution(tiny_llama, CLEAN, target=" Mary", wrong=" John", position=9).wait()
    att = aw.Attention(tiny_llama, "x").wait()
    dla.link(att)
    dla.selected = {"row": 1, "col": 2}
    att.wait()
    assert att.status == "done", att.error
    assert att.prompt == CLEAN and list(att.pattern_head) == [1, 2] and att.query_index == 9


def test_link_refuses_a_view_it_cannot_point(tiny_llama):
    lens = aw.LogitLens(tiny_llama, CLEAN)
    with pytest.raises(TypeError, match="LogitLens.link takes LogitAttribution, not Heatmap"):
        lens.link(aw.Heatmap(tiny_llama, CLEAN))


def test_a_lens_click_attributes_the_token_the_lens_shows_even_a_piece_of_a_character(tokenizer):
    """The lens hands over its top-1 token as the label it shows: a piece of a character (byte
    BPE) decodes to '�', which is another token, and DLA attributed that one, saying "done"."""
    from families import tiny

    model, prompt = tiny("qwen2", tokenizer), "The Eiffel Tower is located in the city of"
    lens = aw.LogitLens(model, prompt).wait()
    top = [int(i) for i in lens.data.topk_ids[-1, :, 0]]
    col = next(c for c, i in enumerate(top) if tokenizer(tokenizer.decode([i]), add_special_tokens=False)["input_ids"] != [i])
    dla = aw.LogitAttribution(model, prompt, " Paris").wait()
    lens.link(dla)
    lens.selected = {"row": 0, "col": col}
    dla.wait()
    assert dla.status == "done" and dla.data.target_id == top[col], (dla.error, dla.target)
    assert "�" not in dla.metric_label and dla.target == model.token_texts([top[col]])[0]
