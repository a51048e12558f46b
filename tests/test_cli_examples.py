"""`lazarus introspect examples` through the real entry point: the report, -o JSON and Parquet,
the corpus formats, resume after SIGKILL, and bad input (one line, exit 2, no file)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lazarus.cli.main import main

CORPUS = Path(__file__).parent / "data" / "corpus.txt"
SRC = Path(__file__).parent.parent / "src"


def examples(model: Path, corpus: Path, *extra: str) -> list[str]:
    return ["introspect", "examples", "-m", str(model), "-l", "1", "--corpus", str(corpus),
            *extra]


@pytest.fixture(scope="module")
def lines() -> list[str]:
    return CORPUS.read_text().splitlines()[:40]


def comparable(document: dict) -> dict:
    return {k: v for k, v in document.items() if k not in ("work_dir", "resumed_shards")}


def test_report_json_and_formats_agree(llama_dir, lines, tmp_path, capsys):
    txt = tmp_path / "c.txt"
    txt.write_text("\n".join(lines) + "\n")
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("".join(json.dumps({"id": i, "body": line}) + "\n"
                             for i, line in enumerate(lines)))
    args = ["-n", "3,9", "--examples", "3", "--window", "10", "--work-dir", str(tmp_path / "w")]
    assert main(examples(llama_dir, txt, *args, "-o", str(tmp_path / "a.json"))) == 0
    report = capsys.readouterr().out
    assert report.index("neuron 3") < report.index("neuron 9")
    assert "top 3" in report
    assert "bottom 3" in report
    assert "[" in report.split("top 3")[1].splitlines()[1]
    assert main(examples(llama_dir, jsonl, *args, "--text-field", "body", "-o",
                         str(tmp_path / "b.json"))) == 0
    first = json.loads((tmp_path / "a.json").read_text())
    second = json.loads((tmp_path / "b.json").read_text())
    assert first["tokens"] == sum(len(line) for line in lines)
    assert [n["neuron"] for n in first["neurons"]] == [3, 9]
    assert first["neurons"] == second["neurons"]
    top = first["neurons"][0]["top"][0]
    assert top["text"] == lines[top["doc"]][top["window"] * 10 + top["token"]]


def test_parquet_in_and_out(llama_dir, lines, tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    corpus = tmp_path / "c.parquet"
    pq.write_table(pa.table({"text": lines}), corpus)
    out = tmp_path / "rows.parquet"
    assert main(examples(llama_dir, corpus, "-n", "3,9", "--examples", "2", "--window", "10",
                         "--work-dir", str(tmp_path / "w"), "-o", str(out))) == 0
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 2 * 2 * 2  # neurons x (top, bottom) x examples
    assert {(r["neuron"], r["kind"], r["rank"]) for r in rows} == {
        (n, kind, rank) for n in (3, 9) for kind in ("top", "bottom") for rank in (1, 2)}
    for row in rows:
        assert row["text"] == lines[row["doc"]][row["window"] * 10 + row["token"]]


def run(args: list[str], **kwargs) -> subprocess.Popen:
    # One thread: on a shared machine two threads' spin-waits make small forwards slow.
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "lazarus.cli.main", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)


@pytest.mark.integration
def test_sigkill_then_resume_gives_the_same_result(llama_dir, lines, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(lines) + "\n")
    base = examples(llama_dir, corpus, "--window", "8", "--shard-windows", "2", "--examples",
                    "4", "--device", "cpu")
    work = tmp_path / "work"
    killed = run([*base, "--work-dir", str(work)])
    deadline = time.monotonic() + 120
    while not list(work.glob("*/shard-*.npz")) and time.monotonic() < deadline:
        assert killed.poll() is None
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    folder = next(work.iterdir())
    total = json.loads((folder / "settings.json").read_text())["shards"]
    written = len(list(folder.glob("shard-*.npz")))
    print("shards written before the kill:", written, "of", total)
    assert 1 <= written < total
    resumed = run([*base, "--work-dir", str(work), "-o", str(tmp_path / "resumed.json")])
    assert resumed.wait() == 0, resumed.stderr.read()
    assert b"resumed:" in resumed.stderr.read()
    whole = run([*base, "--work-dir", str(tmp_path / "fresh"), "-o", str(tmp_path / "w.json")])
    assert whole.wait() == 0, whole.stderr.read()
    first = json.loads((tmp_path / "resumed.json").read_text())
    second = json.loads((tmp_path / "w.json").read_text())
    assert first["resumed_shards"] >= written
    assert comparable(first) == comparable(second)


def test_a_damaged_shard_is_computed_again(llama_dir, lines, tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(lines) + "\n")
    args = examples(llama_dir, corpus, "-n", "1", "--window", "10", "--shard-windows", "10",
                    "--work-dir", str(tmp_path / "w"))
    assert main([*args, "-o", str(tmp_path / "a.json")]) == 0
    shard = next((tmp_path / "w").glob("*/shard-000001.npz"))
    shard.write_bytes(shard.read_bytes()[:100])  # as if cut off (never by our own writes)
    assert main([*args, "-o", str(tmp_path / "b.json")]) == 0
    capsys.readouterr()
    first = json.loads((tmp_path / "a.json").read_text())
    second = json.loads((tmp_path / "b.json").read_text())
    assert second["resumed_shards"] == first["shards"] - 1
    assert comparable(first) == comparable(second)


def fails(capsys, tmp_path: Path, argv: list[str]) -> str:
    output = tmp_path / "never.json"
    code = main([*argv, "-o", str(output)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    assert not output.exists()
    return lines[0]


def test_bad_input(llama_dir, tmp_path, capsys):
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"text": "1+1=2"}\n{"body": "2+2=4"}\n')
    message = fails(capsys, tmp_path, examples(llama_dir, jsonl, "--work-dir", str(tmp_path)))
    assert "line 2 has no 'text' field" in message
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    assert "holds no text" in fails(capsys, tmp_path, examples(llama_dir, empty))
    assert "--window must be at least 1" in fails(
        capsys, tmp_path, examples(llama_dir, CORPUS, "--window", "0"))
    assert "--stride must be between 1 and --window" in fails(
        capsys, tmp_path, examples(llama_dir, CORPUS, "--window", "4", "--stride", "5"))
    assert "unknown format" in fails(capsys, tmp_path,
                                     examples(llama_dir, tmp_path / "c.csv"))
    assert "--neurons and --from-direction" in fails(
        capsys, tmp_path, examples(llama_dir, CORPUS, "-n", "1", "--from-direction", "x.npz"))
    assert "corpus file not found" in fails(capsys, tmp_path,
                                            examples(llama_dir, tmp_path / "none.txt"))
    assert "examples reads one layer" in fails(
        capsys, tmp_path, examples(llama_dir, CORPUS)[:4] + ["-l", "0,1", "--corpus",
                                                              str(CORPUS)])
    assert "as the work folder" in fails(capsys, tmp_path, examples(
        llama_dir, CORPUS, "-n", "3", "--work-dir", str(empty)))  # a file, not a folder
    message = fails(capsys, tmp_path, examples(llama_dir, CORPUS, "-n", "3,64", "--work-dir",
                                               str(tmp_path / "w")))
    assert "64" in message
    assert list((tmp_path / "w").glob("*/shard-*")) == []


def test_parquet_without_the_column(llama_dir, tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    corpus = tmp_path / "c.parquet"
    pq.write_table(pa.table({"body": ["1+1=2"]}), corpus)
    message = fails(capsys, tmp_path, examples(llama_dir, corpus))
    assert "has no column 'text'" in message


@pytest.mark.integration
def test_help_imports_neither_ray_nor_torch():
    code = ("import sys\nfrom lazarus.cli.main import main\n"
            "for argv in (['--help'], ['introspect', 'examples', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'torch', "
            "'pyarrow')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(SRC)}, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.integration
def test_ray_local_with_two_workers_equals_one_process(llama_dir, lines, tmp_path):
    """Bit for bit the single process's result; Parquet shards; each of the two actors loads
    the model once, however many shards it is given."""
    pytest.importorskip("ray.data")
    import pyarrow.parquet as pq
    import ray

    import lazarus
    from lazarus.errors import LazarusError

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(lines) + "\n")
    model = lazarus.load(str(llama_dir))
    settings = {"neurons": (1, 2, 60), "examples": 3, "window": 10, "stride": 6,
                "shard_windows": 1, "token_budget": 256, "max_batch": 16}
    alone = model.examples(str(corpus), 1, work_dir=str(tmp_path / "a"), **settings)
    driver = lazarus.load(str(llama_dir))
    try:
        spread = driver.examples(str(corpus), 1, work_dir=str(tmp_path / "b"), ray=True,
                                 ray_workers=2, **settings)
        wide = {**settings, "neurons": (1, 9999)}  # an actor's error: one line, as without Ray
        with pytest.raises(LazarusError, match="neuron 9999 is out of range"):
            driver.examples(str(corpus), 1, work_dir=str(tmp_path / "c"), ray=True,
                            ray_workers=2, **wide)
    finally:
        ray.shutdown()
    assert driver.loads == 0  # the calling process only tokenizes and merges
    assert spread.shards == alone.shards
    assert spread.shards > 40  # more than the old 16 shards per worker per dataset
    assert spread.resumed_shards == 0
    first, second = alone.to_json(), spread.to_json()
    assert first.pop("work_dir") != second.pop("work_dir")
    assert first == second  # bit for bit: same shards, same batches, same thread count
    folder = Path(spread.work_dir)
    files = sorted(folder.glob("shard-*.parquet"))
    assert len(files) == spread.shards
    assert not list(folder.glob("shard-*.npz"))
    actors = {pq.read_schema(f).metadata[b"lazarus.actor"] for f in files}
    assert len(actors) <= 2  # one model load per actor
    assert not (folder / "windows").exists()  # each shard's windows, removed once done


def test_ray_actor_plan():
    """One actor per GPU when the model may run on GPUs; CPU actors by threads otherwise."""
    from lazarus.analyses.scan_ray import CPU_PER_ACTOR, actor_plan
    from lazarus.errors import LazarusError

    gpu = {"num_cpus": CPU_PER_ACTOR, "num_gpus": 1}
    cpu = {"num_cpus": CPU_PER_ACTOR}
    assert actor_plan("auto", {"CPU": 32, "GPU": 4}, 8, None) == (4, gpu, None)
    assert actor_plan("cuda", {"CPU": 32, "GPU": 4}, 8, 2) == (2, gpu, None)
    workers, resources, warning = actor_plan("auto", {"CPU": 32, "GPU": 4}, 8, 6)
    assert (workers, resources) == (4, gpu)
    assert "more than the cluster's 4 GPUs" in warning
    assert actor_plan("cpu", {"CPU": 32, "GPU": 4}, 8, None) == (4, cpu, None)
    assert actor_plan("auto", {"CPU": 2}, 2, None) == (1, cpu, None)
    assert actor_plan("auto", {"CPU": 2}, 2, 3) == (3, cpu, None)
    with pytest.raises(LazarusError, match="has no GPU"):
        actor_plan("cuda", {"CPU": 8}, 1, None)


def test_from_direction_takes_its_top_neurons(llama_dir, lines, tmp_path, capsys):
    import numpy as np

    from lazarus.io.directions import Direction, save_direction

    weights = np.full(64, 0.01, np.float32)
    weights[7], weights[2] = -0.9, 0.4  # ranked by |weight|: 7 first, then 2
    save_direction(str(tmp_path / "d.npz"), Direction(weights / np.linalg.norm(weights),
                                                      layer=1))
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(lines) + "\n")
    common = ["--window", "10", "--work-dir", str(tmp_path / "w")]
    assert main(examples(llama_dir, corpus, "--from-direction", str(tmp_path / "d.npz"),
                         "--top-k", "2", *common, "-o", str(tmp_path / "d.json"))) == 0
    assert main(examples(llama_dir, corpus, "-n", "7,2", *common, "-o",
                         str(tmp_path / "n.json"))) == 0
    assert capsys.readouterr().err.count("warning") == 0
    chosen = json.loads((tmp_path / "d.json").read_text())
    given = json.loads((tmp_path / "n.json").read_text())
    assert [n["neuron"] for n in chosen["neurons"]] == [7, 2]
    assert "by |weight|" in chosen["neuron_choice"]
    assert chosen["neurons"] == given["neurons"]


def test_html_page_holds_every_example_escaped(llama_dir, tmp_path, capsys):
    from html.parser import HTMLParser

    corpus = tmp_path / "c.txt"
    hostile = "<script>alert(1)</script> & 2+2"
    corpus.write_text(f"{hostile}\n{hostile} again\n")  # every example's context holds it
    common = examples(llama_dir, corpus, "-n", "3", "--examples", "2", "--window", "10",
                      "--work-dir", str(tmp_path / "w"))
    assert main([*common, "-o", str(tmp_path / "page.html")]) == 0
    assert main([*common, "-o", str(tmp_path / "page.json")]) == 0
    capsys.readouterr()
    page = (tmp_path / "page.html").read_text()
    document = json.loads((tmp_path / "page.json").read_text())

    class Collect(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.marks: list[str] = []
            self.contexts: list[str] = []
            self.tags: list[str] = []
            self.inside = self.context = False

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            self.inside = tag == "mark"
            if ("class", "ctx") in attrs:
                self.context = True
                self.contexts.append("")

        def handle_endtag(self, tag):
            self.inside = False
            self.context = self.context and tag != "td"

        def handle_data(self, data):
            if self.inside:
                self.marks.append(data)
            if self.context:
                self.contexts[-1] += data

    parsed = Collect()
    parsed.feed(page)
    assert "script" not in parsed.tags  # the corpus's text is shown, never run
    assert "&lt;" in page
    neuron = document["neurons"][0]
    chosen = (*neuron["top"], *neuron["bottom"])
    assert parsed.marks == [e["text"] for e in chosen]
    assert parsed.contexts == [e["before"] + e["text"] + e["after"] for e in chosen]
    assert any("<script>" in context for context in parsed.contexts)


def test_a_dataset_in_the_local_hugging_face_cache(llama_dir, lines, tmp_path, capsys,
                                                   monkeypatch):
    """`--corpus hf:org/name` reads the dataset's data file from the local Hub cache (laid out
    as huggingface_hub lays out a downloaded dataset), never from the network: the result is
    the one of the same file given by path."""
    import huggingface_hub

    hub = tmp_path / "hub"
    repo = hub / "datasets--org--tiny"
    snapshot = repo / "snapshots" / ("c" * 40) / "data"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("c" * 40)
    (snapshot / "train.jsonl").write_text("".join(json.dumps({"text": line}) + "\n"
                                                  for line in lines[:12]))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    common = ["-n", "3", "--examples", "2", "--window", "10"]
    assert main(examples(llama_dir, "hf:org/tiny", *common, "--work-dir", str(tmp_path / "a"),
                         "-o", str(tmp_path / "hub.json"))) == 0
    assert main(examples(llama_dir, snapshot / "train.jsonl", *common, "--work-dir",
                         str(tmp_path / "b"), "-o", str(tmp_path / "path.json"))) == 0
    capsys.readouterr()
    by_hub = json.loads((tmp_path / "hub.json").read_text())
    by_path = json.loads((tmp_path / "path.json").read_text())
    assert by_hub["neurons"] == by_path["neurons"]
    assert by_hub["tokens"] == sum(len(line) for line in lines[:12])
    code = main(examples(llama_dir, "hf:org/absent", *common, "-o", str(tmp_path / "x.json")))
    err = capsys.readouterr().err
    assert code == 2
    assert "not in the local Hugging Face cache" in err
    assert not (tmp_path / "x.json").exists()


def test_a_ray_address_that_is_malformed_or_unanswered_is_one_line(llama_dir, lines, tmp_path,
                                                                     capsys):
    """ray.init would wait for ever at an address nothing answers at, and a malformed one
    raised a traceback: both are refused in one line before the corpus is read."""
    pytest.importorskip("ray.data")
    import socket

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(lines) + "\n")
    with socket.socket() as probe:  # a port nothing listens on: bound, then closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for address, expected in (("garbage", "is not HOST:PORT"),
                              (f"127.0.0.1:{port}", "nothing answers at")):
        code = main(examples(llama_dir, corpus, "-n", "1", "--work-dir", str(tmp_path / "w"),
                             "--ray-address", address))
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2
        assert len(err) == 1
        assert expected in err[0]


def test_an_empty_work_dir_is_refused(llama_dir, lines, tmp_path, capsys, monkeypatch):
    """`--work-dir ""` used to put the work folder in the current folder, unasked."""
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(lines) + "\n")
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.iterdir())
    assert main(examples(llama_dir, corpus, "-n", "1", "--work-dir", "")) == 2
    assert "--work-dir is empty" in capsys.readouterr().err
    assert sorted(tmp_path.iterdir()) == before


def test_cache_info_counts_the_examples_work_folders(llama_dir, lines, tmp_path, capsys,
                                                      monkeypatch):
    """They are not the activation cache (`cache clear` leaves them), but they take space."""
    monkeypatch.setenv("LAZARUS_CACHE_DIR", str(tmp_path / "cache"))
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(lines[:5]) + "\n")
    for neuron in ("1", "2"):  # two settings: two work folders in the default place
        assert main(examples(llama_dir, corpus, "-n", neuron)) == 0
    capsys.readouterr()
    assert main(["cache", "info"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    folder = tmp_path / "cache" / "examples"
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert last.startswith("corpus scans (introspect examples): 2 work folders, ")
    assert f"in {folder} " in last
    assert size > 0
