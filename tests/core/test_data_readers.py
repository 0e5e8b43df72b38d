"""load_data: CSV/TSV files, in-memory data, DataFrames; kind inference, column mapping, errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from finetuner import DataError
from finetuner.data import LabeledData, PairData, RetrievalData, ScoredData, load_data


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def touch_image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG not decoded at read time")
    return path


# --- kinds, headers, columns -------------------------------------------------------------


def test_header_query_document_gives_pairs_and_logs_the_inferred_kind(tmp_path, caplog):
    csv = write(tmp_path / "train.csv", "query,document\nwhat is a cat,a small feline\nred fruit,apple\n")
    with caplog.at_level(logging.INFO, logger="finetuner"):
        data = load_data(csv)
    assert isinstance(data, PairData)
    assert data.queries == ["what is a cat", "red fruit"]
    assert data.documents == ["a small feline", "apple"]
    assert data.source == str(csv)
    assert "read 2 query/document pairs" in caplog.text
    assert "kind inferred: pairs" in caplog.text and "train.csv" in caplog.text


def test_no_header_two_columns_are_pairs_and_the_first_row_is_data(tmp_path):
    data = load_data(write(tmp_path / "p.csv", "a cat,a feline\na dog,a canine\n"))
    assert isinstance(data, PairData)
    assert data.queries == ["a cat", "a dog"]


def test_no_header_three_columns_with_numeric_third_are_scored(tmp_path):
    data = load_data(write(tmp_path / "s.csv", '"A man, dancing.",A man dances.,4.75\nx,y,0\n'))
    assert isinstance(data, ScoredData)
    assert data.a == ["A man, dancing.", "x"] and data.b == ["A man dances.", "y"]
    assert data.scores == [4.75, 0.0]


def test_no_header_three_columns_with_text_third_needs_columns(tmp_path):
    with pytest.raises(DataError, match=r"3 columns and no header"):
        load_data(write(tmp_path / "t.csv", "red,green,blue sky\nd,e,f f\n"))


@pytest.mark.parametrize(
    ("header", "kind"),
    [
        ("sentence1,sentence2,score", "scored"),
        ("a,b,similarity", "scored"),
        ("sentence1,sentence2,label", "scored"),
        ("anchor,positive", "pairs"),
    ],
)
def test_kind_from_header_names(tmp_path, header, kind):
    data = load_data(write(tmp_path / "d.csv", f"{header}\nfirst text,second text{',3.5' if header.count(',') == 2 else ''}\n"))
    assert data.kind == kind


def test_label_header_gives_labeled_data_with_string_labels(tmp_path):
    data = load_data(write(tmp_path / "l.csv", "text,label\nhello,1\nbye,2\nhi,1\n"))
    assert isinstance(data, LabeledData)
    assert data.items == ["hello", "bye", "hi"]
    assert data.labels == ["1", "2", "1"]
    assert data.label_counts() == {"1": 2, "2": 1}


def test_kind_can_be_forced_for_a_headerless_file(tmp_path):
    data = load_data(write(tmp_path / "l.csv", "hello,greeting\nbye,farewell\n"), kind="labeled")
    assert isinstance(data, LabeledData) and data.labels == ["greeting", "farewell"]


def test_header_false_reads_the_first_row_as_data(tmp_path):
    data = load_data(write(tmp_path / "p.csv", "query,document\nq,d\n"), header=False)
    assert data.queries == ["query", "q"]


def test_header_true_with_unknown_names_maps_by_position(tmp_path):
    data = load_data(write(tmp_path / "p.csv", "left side,right side\nq,d\n"), header=True)
    assert isinstance(data, PairData) and data.queries == ["q"] and data.documents == ["d"]


def test_header_sniffed_from_a_numeric_column(tmp_path):
    data = load_data(write(tmp_path / "s.csv", "first,second,sim\nx,y,1.5\nz,w,2\n"), kind="scored")
    assert isinstance(data, ScoredData) and data.a == ["x", "z"]


@pytest.mark.parametrize("header", ["query,document,id", "question,answer,row", "x,y,sim"])
def test_a_numeric_third_column_not_named_like_a_score_asks_for_the_kind(tmp_path, header):
    csv = write(tmp_path / "d.csv", f"{header}\nq1,d1,7\nq2,d2,8\n")
    first, second, third = header.split(",")
    with pytest.raises(DataError) as error:
        load_data(csv)
    message = str(error.value)
    assert f"d.csv: its third column '{third}' holds numbers but is not named like a score" in message
    assert f"(columns: '{first}', '{second}', '{third}')" in message
    assert "kind='scored'" in message and "kind='pairs'" in message and f"columns={{'query': '{first}'" in message
    scored = load_data(csv, kind="scored")
    assert isinstance(scored, ScoredData) and scored.scores == [7.0, 8.0]


def test_query_document_id_reads_as_pairs_when_asked(tmp_path):
    data = load_data(write(tmp_path / "d.csv", "query,document,id\nq1,d1,7\nq2,d2,8\n"), kind="pairs")
    assert isinstance(data, PairData) and data.queries == ["q1", "q2"] and data.documents == ["d1", "d2"]
    in_memory = {"query": ["q1"], "document": ["d1"], "id": [7]}
    with pytest.raises(DataError, match="'id' holds numbers but is not named like a score"):
        load_data(in_memory)
    assert load_data(in_memory, columns={"query": "query", "document": "document"}).documents == ["d1"]


def test_extra_columns_are_ignored_when_the_roles_are_named(tmp_path):
    data = load_data(write(tmp_path / "p.csv", "id,query,document,source\n7,q1,d1,web\n8,q2,d2,web\n"))
    assert isinstance(data, PairData) and data.queries == ["q1", "q2"] and data.documents == ["d1", "d2"]


def test_column_mapping_by_name_and_by_index(tmp_path):
    csv = write(tmp_path / "qa.csv", "id,question,answer\n1,why,because\n2,how,like this\n")
    by_name = load_data(csv, columns={"query": "question", "document": "answer"})
    assert isinstance(by_name, PairData) and by_name.queries == ["why", "how"] and by_name.documents == ["because", "like this"]
    headerless = write(tmp_path / "nohead.csv", "1,why,because\n2,how,like this\n")
    by_index = load_data(headerless, columns={"query": 1, "document": 2})
    assert by_index.queries == ["why", "how"]


def test_partial_mapping_gives_the_other_column_to_the_other_role(tmp_path):
    data = load_data(write(tmp_path / "qa.csv", "question,reply\nwhy,because\n"), columns={"query": "question"})
    assert data.queries == ["why"] and data.documents == ["because"]


def test_column_mapping_keys_may_be_aliases_and_decide_the_kind(tmp_path):
    csv = write(tmp_path / "x.csv", "s1,s2,gold\nx,y,3\nz,w,1\n")
    data = load_data(csv, columns={"sentence1": "s1", "sentence2": "s2", "score": "gold"})
    assert isinstance(data, ScoredData) and data.scores == [3.0, 1.0]


def test_unknown_column_name_lists_the_available_ones(tmp_path):
    csv = write(tmp_path / "qa.csv", "question,answer\nwhy,because\n")
    with pytest.raises(DataError) as error:
        load_data(csv, columns={"query": "questoin", "document": "answer"})
    assert "'questoin'" in str(error.value) and "'question'" in str(error.value) and "'answer'" in str(error.value)


def test_unknown_role_and_out_of_range_index_are_errors(tmp_path):
    csv = write(tmp_path / "qa.csv", "why,because\n")
    with pytest.raises(DataError, match="not a role"):
        load_data(csv, columns={"questions": 0, "document": 1})
    with pytest.raises(DataError, match="has 2 columns"):
        load_data(csv, columns={"query": 0, "document": 5})


def test_column_name_without_header_is_an_error(tmp_path):
    csv = write(tmp_path / "qa.csv", "why,because\n")
    with pytest.raises(DataError, match="no header"):
        load_data(csv, header=False, columns={"query": "question", "document": "answer"})


def test_unclear_columns_ask_for_a_mapping(tmp_path):
    with pytest.raises(DataError, match="columns="):
        load_data(write(tmp_path / "x.csv", "name,short_name,group\nx,y,z\n"))


# --- CSV dialects and encodings -------------------------------------------------------------


def test_tsv_by_suffix_and_custom_delimiter(tmp_path):
    tsv = load_data(write(tmp_path / "p.tsv", "query\tdocument\na, b\tc; d\n"))
    assert tsv.queries == ["a, b"] and tsv.documents == ["c; d"]
    semi = load_data(write(tmp_path / "p.txt", "query;document\na, b;c\n"), delimiter=";")
    assert semi.queries == ["a, b"]


def test_single_column_suggests_the_delimiter(tmp_path):
    with pytest.raises(DataError, match=r"delimiter='\\t'"):
        load_data(write(tmp_path / "p.csv", "query\tdocument\na\tb\n"))


def test_quoted_fields_keep_commas_quotes_and_newlines_and_later_lines_are_counted(tmp_path):
    text = 'query,document\n"a, b","line one\nline two"\n"say ""hi""",x\nbad\n'
    csv = write(tmp_path / "q.csv", text)
    with pytest.raises(DataError, match=r"q\.csv, line 5: 1 fields, expected 2"):
        load_data(csv)
    data = load_data(write(tmp_path / "ok.csv", text.replace("bad\n", "")))
    assert data.queries == ["a, b", 'say "hi"']
    assert data.documents == ["line one\nline two", "x"]


def test_blank_lines_are_skipped(tmp_path):
    assert len(load_data(write(tmp_path / "p.csv", "query,document\n\nq,d\n\n\nq2,d2\n"))) == 2


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_byte_order_marks_are_honoured(tmp_path, encoding):
    data = load_data(write(tmp_path / "p.csv", "query,document\ncafé,naïve\n", encoding))
    assert data.queries == ["café"] and data.documents == ["naïve"]


def test_encoding_argument(tmp_path):
    csv = write(tmp_path / "p.csv", "query,document\ncafé,naïve\n", "latin-1")
    with pytest.raises(DataError, match=r"p\.csv, line 2: .*not valid utf-8.*encoding="):
        load_data(csv)
    assert load_data(csv, encoding="latin-1").queries == ["café"]
    with pytest.raises(DataError, match="not a known text encoding"):
        load_data(csv, encoding="no-such-codec")


def test_undecodable_bytes_name_the_line(tmp_path):
    csv = tmp_path / "bad.csv"
    csv.write_bytes(b"query,document\nfine,ok\nalso,fine\nbroken \xff\xfe here,x\n")
    with pytest.raises(DataError, match=r"bad\.csv, line 4: bytes b'\\xff' are not valid utf-8;"):
        load_data(csv)


def test_nul_characters_are_reported(tmp_path):
    csv = tmp_path / "nul.csv"
    csv.write_bytes("query,document\nq,d\n".encode("utf-16-le"))
    with pytest.raises(DataError, match=r"nul\.csv, line 1: contains NUL"):
        load_data(csv)


def test_a_cell_longer_than_the_csv_modules_field_limit_is_read(tmp_path):
    document = "word " * 40_000  # 200,000 characters; the csv module stops at 131,072 by default
    csv = write(tmp_path / "big.csv", f"query,document\nq,d\nq,{document}\n")
    assert load_data(csv).documents == ["d", document]


# --- file errors ---------------------------------------------------------------------------


def test_missing_empty_and_header_only_files(tmp_path):
    with pytest.raises(DataError, match="not found: .*nope.csv"):
        load_data(tmp_path / "nope.csv")
    with pytest.raises(DataError, match=r"empty\.csv is empty"):
        load_data(write(tmp_path / "empty.csv", "\n  \n"))
    with pytest.raises(DataError, match=r"head\.csv has no rows \(only a header\)"):
        load_data(write(tmp_path / "head.csv", "query,document\n"))


def test_wrong_number_of_fields_names_file_and_line(tmp_path):
    csv = write(tmp_path / "rows.csv", "query,document\nq1,d1\nq2,d2,extra\n")
    with pytest.raises(
        DataError,
        match=r"rows\.csv, line 3: 3 fields, expected 2 like line 1 \(a field containing the delimiter must be quoted\)",
    ):
        load_data(csv)


def test_non_numeric_score_names_file_line_and_value(tmp_path):
    with pytest.raises(DataError, match=r"s\.csv, line 3: score 'high' .* is not a finite number"):
        load_data(write(tmp_path / "s.csv", "a,b,score\nx,y,1\nx,z,high\n"))
    with pytest.raises(DataError, match=r"n\.csv, line 2: score 'nan'"):
        load_data(write(tmp_path / "n.csv", "x,y,1\nx,z,nan\n"), kind="scored")


def test_empty_value_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"e\.csv, line 3: empty 'document'"):
        load_data(write(tmp_path / "e.csv", "query,document\nq,d\nq2,  \n"))


def test_unsupported_formats_and_options(tmp_path):
    with pytest.raises(DataError, match="DataFrame"):
        load_data(write(tmp_path / "d.jsonl", "{}\n"))
    with pytest.raises(DataError, match="delimiter="):
        load_data(write(tmp_path / "p.csv", "q,d\n"), delimiter=",,")
    with pytest.raises(DataError, match="not a data kind"):
        load_data(write(tmp_path / "p.csv", "q,d\n"), kind="triplets")


# --- image paths ---------------------------------------------------------------------------


def test_image_paths_resolve_relative_to_the_csv_folder(tmp_path):
    touch_image(tmp_path / "imgs" / "cat.png")
    touch_image(tmp_path / "dog.JPG")
    csv = write(tmp_path / "captions.csv", "image,caption\nimgs/cat.png,a cat\ndog.JPG,a dog\n")
    data = load_data(csv)
    assert isinstance(data, PairData)
    assert data.queries == ["a cat", "a dog"]
    assert data.documents == [tmp_path / "imgs" / "cat.png", tmp_path / "dog.JPG"]
    assert all(isinstance(path, Path) and path.is_file() for path in data.documents)


def test_image_values_are_recognised_without_an_image_column_name(tmp_path):
    touch_image(tmp_path / "a.webp")
    touch_image(tmp_path / "b.tiff")
    data = load_data(write(tmp_path / "l.csv", "a.webp,x\nb.tiff,y\n"), kind="labeled")
    assert data.items == [tmp_path / "a.webp", tmp_path / "b.tiff"]


def test_missing_image_names_csv_line_and_path(tmp_path):
    touch_image(tmp_path / "cat.png")
    csv = write(tmp_path / "captions.csv", "image,caption\ncat.png,a cat\nmissing.png,a ghost\n")
    with pytest.raises(DataError) as error:
        load_data(csv)
    message = str(error.value)
    assert "captions.csv, line 3" in message and str(tmp_path / "missing.png") in message


def test_images_in_a_subfolder_are_found_or_taken_from_image_dir(tmp_path):
    touch_image(tmp_path / "photos" / "cat.png")
    touch_image(tmp_path / "elsewhere" / "x" / "cat.png")
    csv = write(tmp_path / "captions.csv", "image,caption\ncat.png,a cat\n")
    assert load_data(csv).documents == [tmp_path / "photos" / "cat.png"]
    assert load_data(csv, image_dir=tmp_path / "elsewhere" / "x").documents == [tmp_path / "elsewhere" / "x" / "cat.png"]
    with pytest.raises(DataError, match="not found"):
        load_data(csv, image_dir=tmp_path)


# --- in-memory data ------------------------------------------------------------------------


def test_list_of_pairs_scored_triples_and_labeled_tuples():
    pairs = load_data([("q1", "d1"), ("q2", "d2")])
    assert isinstance(pairs, PairData) and pairs.queries == ["q1", "q2"] and pairs.source == "<list>"
    scored = load_data([("a", "b", 0.5), ("c", "d", 1)])
    assert isinstance(scored, ScoredData) and scored.scores == [0.5, 1.0]
    labeled = load_data([("x", 3), ("y", 3), ("z", 4)], kind="labeled")
    assert isinstance(labeled, LabeledData) and labeled.labels == ["3", "3", "4"]


def test_list_of_dicts_and_dict_of_columns():
    rows = load_data([{"text": "a cat", "label": "cat"}, {"label": "dog", "text": "a dog"}])
    assert isinstance(rows, LabeledData) and rows.items == ["a cat", "a dog"] and rows.labels == ["cat", "dog"]
    columns = load_data({"anchor": ["q1", "q2"], "positive": ["d1", "d2"]})
    assert isinstance(columns, PairData) and columns.documents == ["d1", "d2"]


def test_non_text_items_are_kept_as_they_are():
    arrays = [object(), object()]
    data = load_data({"image": arrays, "label": ["a", "b"]})
    assert data.items == arrays


def test_in_memory_image_paths_become_checked_paths(tmp_path):
    image = touch_image(tmp_path / "x.png")
    data = load_data([("a cat", str(image))])
    assert data.documents == [image]
    with pytest.raises(DataError, match=r"<list>, row 1: image .*gone\.png"):
        load_data([("a cat", str(image)), ("a ghost", str(tmp_path / "gone.png"))])


@pytest.mark.parametrize(
    ("source", "pattern"),
    [
        ([], "empty"),
        ([("a", "b"), ("c",)], r"row 1: 1 values, but row 0 has 2"),
        (["just", "strings"], r"row 0: expected a tuple"),
        ([{"query": "q", "document": "d"}, {"query": "q"}], r"row 1: expected a dict with keys"),
        ({"query": ["a", "b"], "document": ["c"]}, "different lengths"),
        ({"query": "abc", "document": "def"}, "must be a list"),
        ([("a", "b", 1.0, "x")], "4 columns and no header"),  # (a, b, x) are pairs with a negative
        ([("a", "b", 1.0), ("c", "d", "zero")], None),
        ([("a", None)], r"row 0: empty 'document'"),
        (42, "cannot read data from a int"),
    ],
)
def test_in_memory_errors(source, pattern):
    with pytest.raises(DataError, match=pattern) as error:
        load_data(source, kind="scored" if pattern is None else None)
    if pattern is None:
        assert "row 1: score 'zero'" in str(error.value)


def test_built_data_is_returned_as_is_and_kind_must_agree():
    pairs = PairData(["q"], ["d"])
    assert load_data(pairs) is pairs
    retrieval = RetrievalData({"1": "q"}, {"a": "d"}, {"1": {"a": 1}})
    assert load_data(retrieval) is retrieval
    with pytest.raises(DataError, match="PairData"):
        load_data(pairs, kind="labeled")


def test_file_options_are_refused_for_memory_data():
    with pytest.raises(DataError, match="header="):
        load_data([("q", "d")], header=True)


def test_dataframe_input(tmp_path):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"question": ["why", "how"], "answer": ["because", "so"], "n": [1, 2]})
    data = load_data(frame, columns={"query": "question", "document": "answer"})
    assert isinstance(data, PairData) and data.queries == ["why", "how"] and data.documents == ["because", "so"]
    assert data.source == "<DataFrame>"
    scored = load_data(pd.DataFrame({"sentence1": ["a", "b"], "sentence2": ["c", "d"], "score": [0.5, 4]}))
    assert isinstance(scored, ScoredData) and scored.scores == [0.5, 4.0]
    with pytest.raises(DataError, match=r"<DataFrame>, row 1: empty 'label'"):
        load_data(pd.DataFrame({"text": ["a", "b"], "label": ["x", None]}))


def test_a_headerless_file_too_narrow_for_the_roles_names_the_missing_role(tmp_path):
    path = tmp_path / "one-column.csv"
    path.write_text("how do I parse json\nread a file\n")
    with pytest.raises(DataError, match=r"one-column.csv has 1 column\(s\) and no column left for the 'document' role"):
        load_data(path, kind="pairs", columns={"query": 0})
