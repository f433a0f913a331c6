import csv

from sdp_csv_manifest import CsvManifest, register_sinks


def test_registers_the_csv_sink():
    found = {}
    register_sinks(register=lambda name, factory: found.setdefault(name, factory))
    assert found == {"csv": CsvManifest}


def test_rows_and_header(tmp_path):
    sink = CsvManifest(tmp_path)
    rec = {"index": 3, "seed": 3, "prompt": "a, b", "negative": "", "trace": {"s": {"index": 1, "text": "b"}}}
    sink.write(rec, None, tmp_path / "00003.png")
    sink.close()
    sink = CsvManifest(tmp_path)  # reopened: appends without a second header
    sink.write(dict(rec, index=4), None, tmp_path / "00004.png")
    sink.close()
    rows = list(csv.reader((tmp_path / "manifest.csv").open()))
    assert rows[0] == ["index", "file", "seed", "prompt", "negative", "trace"]
    assert rows[1] == ["3", "00003.png", "3", "a, b", "", "s=b"]
    assert rows[2][0] == "4" and len(rows) == 3
