"""vault/tables.py: the build wraps bare tables as Material's script would, and leaves the rest."""
from vault.tables import WRAP_CLOSE, WRAP_OPEN, wrapped_tables


def test_a_bare_table_is_wrapped_and_classed():
    html = "<p>a</p>\n<table>\n<tr><td>1</td></tr>\n</table>\n<p>b</p>"
    assert wrapped_tables(html) == (
        f'<p>a</p>\n{WRAP_OPEN}<table class="kb-table">\n<tr><td>1</td></tr>\n</table>{WRAP_CLOSE}\n<p>b</p>')


def test_tables_with_a_class_and_nested_tables_are_left_as_they_are():
    classed = '<table class="highlighttable"><tr><td>1</td></tr></table>'
    assert wrapped_tables(classed) == classed
    nested = "<table><tr><td><table><tr><td>x</td></tr></table></td></tr></table><p>after</p>"
    out = wrapped_tables(nested)
    assert out.count(WRAP_OPEN) == 1 and out.count('class="kb-table"') == 1
    assert out.endswith(f"</table></td></tr></table>{WRAP_CLOSE}<p>after</p>")


def test_attributes_are_kept():
    wrapped = f'{WRAP_OPEN}<table class="kb-table" id="t">x</table>{WRAP_CLOSE}'
    assert wrapped_tables('<table id="t">x</table>') == wrapped
