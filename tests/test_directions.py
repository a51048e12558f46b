"""The direction file: plain arrays in, plain arrays out, never a pickle."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lazarus.errors import LazarusError
from lazarus.io.directions import Direction, load_direction, save_direction


def test_round_trip_keeps_every_field(tmp_path):
    vector = np.array([0.6, -0.8, 0.0], dtype=np.float32)
    original = Direction(direction=vector, layer=5, label_positive="hard", label_negative="easy",
                         model_id="org/model", method="logistic",
                         importance=np.array([0.1, 0.7, 0.2], np.float32),
                         ranking="share of the logit gap",
                         metrics={"accuracy": 1.0, "separation": 3.5})
    path = tmp_path / "d.npz"
    save_direction(str(path), original)
    with np.load(path, allow_pickle=False) as archive:  # readable by plain numpy, no pickle
        assert archive["direction"].dtype == np.float32
        assert int(archive["hidden_size"]) == 3
        assert str(archive["label_positive"]) == "hard"
    loaded = load_direction(str(path))
    np.testing.assert_array_equal(loaded.direction, vector)
    assert (loaded.layer, loaded.label_positive, loaded.label_negative) == (5, "hard", "easy")
    assert (loaded.model_id, loaded.method) == ("org/model", "logistic")
    assert loaded.metrics == {"accuracy": 1.0, "separation": 3.5}
    assert loaded.ranking_name() == "share of the logit gap"


def test_top_neurons_use_importance_when_stored():
    direction = Direction(direction=np.array([0.9, 0.1, -0.3, 0.2], np.float32),
                          importance=np.array([0.0, 5.0, 1.0, 3.0], np.float32))
    assert direction.top_neurons(3) == [1, 3, 2]


def test_top_neurons_fall_back_to_absolute_weight_with_ties_to_lower_id():
    direction = Direction(direction=np.array([0.1, -0.5, 0.5, 0.05], np.float32))
    assert direction.top_neurons(2) == [1, 2]
    assert direction.top_neurons(10) == [1, 2, 0, 3]  # k larger than the size: all of them
    assert direction.ranking_name() == "|weight|"


def test_save_leaves_no_file_when_writing_fails(tmp_path):
    path = tmp_path / "d.npz"
    bad = Direction(direction=np.ones(3, np.float32), metrics={"accuracy": "not a number"})
    with pytest.raises(ValueError):
        save_direction(str(path), bad)
    assert list(tmp_path.iterdir()) == []


def test_importance_of_the_wrong_length_is_refused(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, direction=np.ones(4), importance=np.ones(3))
    with pytest.raises(LazarusError, match="importance"):
        load_direction(str(path))


def _zip_with_fake_member(path):
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("direction.npy", b"not an npy file at all")


@pytest.mark.parametrize("arrays,key", [
    ({"direction": np.ones(4, np.complex64)}, "direction"),
    ({"direction": np.full(4, 1e300)}, "direction"),  # finite in float64, not in float32
    ({"direction": np.zeros(4)}, "direction"),
    ({"direction": np.ones(4), "layer": np.array("abc")}, "layer"),
    ({"direction": np.ones(4), "layer": np.arange(3)}, "layer"),
    ({"direction": np.ones(4), "layer": np.array(1.7)}, "layer"),
    ({"direction": np.ones(4), "accuracy": np.array("high")}, "accuracy"),
    ({"direction": np.ones(4), "importance": np.array(["a", "b", "c", "d"])}, "importance"),
    ({"direction": np.ones(4), "model_id": np.array([1, 2])}, "model_id"),
])
def test_malformed_fields_are_one_line_errors_naming_the_key(tmp_path, arrays, key):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    with pytest.raises(LazarusError, match=f"'{key}'"):
        load_direction(str(path))


def test_zip_that_is_not_an_npz(tmp_path):
    path = tmp_path / "d.npz"
    _zip_with_fake_member(path)
    with pytest.raises(LazarusError, match="direction"):
        load_direction(str(path))


def test_top_k_beyond_the_direction_warns_with_its_width():
    direction = Direction(direction=np.array([0.1, -0.5, 0.5], np.float32))
    said = []
    assert direction.top_neurons(5, said.append) == [1, 2, 0]
    assert said == ["--top-k 5 is more than the direction's 3 neurons; using all 3"]
    said.clear()
    assert direction.top_neurons(3, said.append) == [1, 2, 0]
    assert said == []
    one = Direction(direction=np.array([0.7], np.float32))
    assert one.top_neurons(2, said.append) == [0]
    assert said == ["--top-k 2 is more than the direction's 1 neuron; using it"]


CORPUS = "I like to read books.\n3*4=12\n"
TOP_K_RUNS = {
    "neurons": ["-l", "0", "-p", "ab|cd"],
    "ablate": ["-l", "0", "-p", "ab:c|cd:e", "--controls", "0"],
    "examples": ["-l", "0", "--corpus", "CORPUS", "--examples", "1", "--work-dir", "WORK"],
}


@pytest.mark.parametrize("command", sorted(TOP_K_RUNS))
def test_top_k_beyond_the_direction_is_one_warning_naming_its_width(capsys, tmp_path, llama_dir,
                                                                     command):
    """--top-k 5000 from a 64-wide direction: all 64 neurons, and one warning saying so."""
    from lazarus.cli.main import main

    path = tmp_path / "d.npz"
    weights = np.linspace(-1, 1, 64).astype(np.float32)
    save_direction(str(path), Direction(direction=weights, layer=0))
    corpus = tmp_path / "c.txt"
    corpus.write_text(CORPUS)
    argv = [{"CORPUS": str(corpus), "WORK": str(tmp_path / "work")}.get(a, a)
            for a in TOP_K_RUNS[command]]
    output = tmp_path / "out.json"
    code = main(["introspect", command, "-m", str(llama_dir), *argv, "--from-direction",
                 str(path), "--top-k", "5000", "-o", str(output)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    warnings = [line for line in captured.err.splitlines() if "warning" in line]
    assert warnings == ["lazarus: warning: --top-k 5000 is more than the direction's 64 "
                        "neurons; using all 64"]
    document = json.loads(output.read_text())
    chosen = document["neurons"]
    ids = [n["neuron"] for n in chosen] if command == "examples" else chosen
    assert sorted(ids) == list(range(64))
    if command == "ablate":  # its report names the neurons it took, not the --top-k asked
        assert document["neuron_selection"].startswith("top 64 of ")
