"""``c360 import-profiles`` on the files spreadsheets really write: stray quotes, loose headers,
Windows encodings, blank lines; and an error report that stays readable."""

from __future__ import annotations

import pytest

from app.services.identifiers import find_profile_by_identifier

HEADER = "Email,First Name\n"


def _import(runner, shop, tmp_path, content: str | bytes):
    path = tmp_path / "profiles.csv"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return runner.invoke(args=["import-profiles", "--shop", shop.domain, "--csv", str(path)])


def _imported(shop, email: str):
    return find_profile_by_identifier(shop.model, "email", email)


def test_a_stray_quote_is_reported_on_its_line_and_the_rows_before_it_are_imported(runner, shop, tmp_path):
    text = HEADER + 'before@ex.com,Bea\n"unterminated@ex.com,,X\nafter@ex.com,Al\nlast@ex.com,Lu\n'
    result = _import(runner, shop, tmp_path, text)
    assert result.exit_code == 1
    assert "1 profile imported, 1 row skipped." in result.output
    assert "row 3: a stray quote opens a cell that never closes: lines 3-5" in result.stderr
    assert _imported(shop, "before@ex.com").first_name == "Bea"
    assert _imported(shop, "after@ex.com") is None


@pytest.mark.parametrize(
    ("broken", "said"),
    [
        ('"two@ex.com,Tw\nthree@ex.com,Th"ree\n', "row 3: its quotes do not pair up"),
        ('"two@ex.com,Tw\nthree@ex.com,Th",\n', "row 3: a stray quote joins lines 3-4 into one row"),
    ],
    ids=["closed-by-text", "closed-by-a-comma"],
)
def test_a_quote_closed_on_a_later_line_is_reported_and_the_rest_read(runner, shop, tmp_path, broken, said):
    result = _import(runner, shop, tmp_path, HEADER + "one@ex.com,One\n" + broken + "four@ex.com,Four\n")
    assert said in result.stderr and "2 profiles imported, 1 row skipped." in result.output
    assert _imported(shop, "four@ex.com").first_name == "Four"
    assert _imported(shop, "three@ex.com") is None


def test_headers_match_whatever_their_case_and_surrounding_spaces(runner, shop, tmp_path):
    text = " Email ,PHONE NUMBER,first name\nana@ex.com,+44 7700 900123,Ana\n,+44 7700 900456,Ben\n"
    result = _import(runner, shop, tmp_path, text)
    assert result.exit_code == 0 and "2 profiles imported, 0 rows skipped." in result.output
    assert _imported(shop, "ana@ex.com").first_name == "Ana"
    assert find_profile_by_identifier(shop.model, "phone", "+447700900456").first_name == "Ben"


@pytest.mark.parametrize("separator", [";", "\t"], ids=["semicolons", "tabs"])
def test_an_export_separated_by_semicolons_or_tabs_is_read_as_such(runner, shop, tmp_path, separator):
    """Excel in much of Europe saves "CSV" with semicolons (the comma is the decimal mark), and
    some tools export tabs: the file was refused for having no Email column."""
    rows = [["Email", "Phone Number", "First Name"], ["ana@ex.com", "+44 7700 900123", "Ana, Maria"]]
    rows.append(["ben@ex.com", "", '"Ben; Jr"'])
    text = "\n".join(separator.join(row) for row in rows) + "\n"
    result = _import(runner, shop, tmp_path, text)
    assert result.exit_code == 0 and "2 profiles imported, 0 rows skipped." in result.output, result.output
    assert _imported(shop, "ana@ex.com").first_name == "Ana, Maria"
    assert _imported(shop, "ben@ex.com").first_name == "Ben; Jr"


def test_a_file_without_email_or_phone_columns_names_the_headers_it_has(runner, shop, tmp_path):
    result = _import(runner, shop, tmp_path, "Name,E-mail address\nAna,ana@ex.com\n")
    assert result.exit_code == 1
    said = "needs an Email or a Phone Number column; its headers are 'Name', 'E-mail address'"
    assert said in result.output


def test_a_repeated_column_is_warned_about_and_the_first_one_used(runner, shop, tmp_path):
    result = _import(runner, shop, tmp_path, "Email,First Name,email\nfirst@ex.com,Fi,second@ex.com\n")
    assert "Warning: the column 'email' appears twice (columns 1 and 3): the first is used" in result.stdout
    assert _imported(shop, "first@ex.com") is not None and _imported(shop, "second@ex.com") is None


def test_a_windows_1252_file_is_read_as_such_and_the_output_says_so(runner, shop, tmp_path):
    result = _import(runner, shop, tmp_path, HEADER.encode() + b"zoe@ex.com,Zo\xeb\n")
    assert result.exit_code == 0, result.output
    assert "The file is not UTF-8: read as Windows-1252." in result.output
    assert _imported(shop, "zoe@ex.com").first_name == "Zoë"


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be", "utf-32"])
def test_a_file_with_a_byte_order_mark_is_read_in_its_encoding(runner, shop, tmp_path, encoding):
    content = (HEADER + "zoe@ex.com,Zoë\n").encode(encoding)
    if encoding == "utf-16-be":
        content = b"\xfe\xff" + content  # Python writes the mark for "utf-16" only, in its own order
    result = _import(runner, shop, tmp_path, content)
    assert result.exit_code == 0, result.output
    assert _imported(shop, "zoe@ex.com").first_name == "Zoë"


def test_rows_are_reported_by_the_file_line_they_start_on(runner, shop, tmp_path):
    """A blank line and a quoted cell over two lines shift the lines from the record count."""
    text = 'Email,First Name,Last Name\n\nann@ex.com,Ann,"Two\nLines"\nnobody,X,Y\n'
    result = _import(runner, shop, tmp_path, text)
    assert "row 5: no usable Email or Phone Number" in result.stderr
    assert _imported(shop, "ann@ex.com").last_name == "Two\nLines"


def test_the_import_report_lists_twenty_failures_then_how_many_more(runner, shop, tmp_path):
    result = _import(runner, shop, tmp_path, HEADER + "nobody,X\n" * 25 + "ok@ex.com,Ok\n")
    failures = [line for line in result.stderr.splitlines() if line.startswith("  row ")]
    assert len(failures) == 20 and failures[-1].startswith("  row 21:")
    assert result.stderr.splitlines()[-1] == "  … and 5 more"
    assert "1 profile imported, 25 rows skipped." in result.output


def test_the_backfill_report_lists_twenty_failures_then_how_many_more(runner, shop, tmp_path):
    path = tmp_path / "orders.jsonl"
    path.write_text("not json\n" * 23)
    result = runner.invoke(args=["backfill", "--shop", shop.domain, "--orders", str(path)])
    assert result.exit_code == 1 and "0 orders imported, 23 lines skipped." in result.output
    failures = [line for line in result.stderr.splitlines() if line.startswith("  line ")]
    assert len(failures) == 20 and result.stderr.splitlines()[-1] == "  … and 3 more"
