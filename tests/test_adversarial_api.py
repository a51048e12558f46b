"""The Python API refuses what a script gets wrong in one line, before any weights load: every
argument of `lazarus.load` / `Model` and of each public method, whatever its type.

Oracle: the signatures themselves (every parameter is tried), the argument names and types in
the messages, and `Model.loads`; where a value is accepted, the plain value's result.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

import lazarus
from lazarus.api import Model
from lazarus.errors import LazarusError

PROMPTS = ["2+2=", "47*47="]
METHODS = ["__init__", "layers", "weights", "capture", "neurons", "probe", "ablate", "examples",
           "steer", "patch", "attribute", "card"]


def required(method: str, llama_dir: Path, tmp_path: Path) -> dict[str, object]:
    """The arguments each method cannot go without, all sound."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("some text to read\n")
    return {"__init__": {"model": str(llama_dir)}, "layers": {"layers": 0},
            "weights": {"up_to_layer": 0}, "capture": {"prompts": PROMPTS},
            "neurons": {"prompts": PROMPTS}, "probe": {"class_a": PROMPTS, "class_b": ["a", "b"]},
            "ablate": {"prompts": PROMPTS, "layers": 0}, "examples": {"corpus": str(corpus)},
            "steer": {"prompts": PROMPTS},
            "patch": {"clean": ["2+2="], "corrupt": ["2+3="], "answers": ["4"]},
            "attribute": {"clean": ["2+2="], "corrupt": ["2+3="], "answers": ["4"]},
            "card": {"neurons": [0]}}[method]


def parameters(method: str) -> list[str]:
    return list(inspect.signature(getattr(Model, method)).parameters)[1:]


def test_every_public_method_is_checked():
    """A public method added without `checked` would let wrong types through again."""
    public = {name for name, member in inspect.getmembers(Model, inspect.isfunction)
              if not name.startswith("_")}
    with_arguments = {name for name in public if parameters(name)}
    assert with_arguments == set(METHODS) - {"__init__"}
    for name in METHODS:
        assert hasattr(getattr(Model, name), "__wrapped__"), name
    assert list(inspect.signature(lazarus.load).parameters) == parameters("__init__")[:6]


def refused(call, *args: object, **kwargs: object) -> str:
    with pytest.raises(LazarusError) as caught:
        call(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(("method", "name"), [(m, p) for m in METHODS for p in parameters(m)])
def test_an_object_of_no_accepted_type_is_refused_by_name(llama_dir, tmp_path, method, name):
    """Every parameter of every method, given a value of no type it takes."""
    arguments = {**required(method, llama_dir, tmp_path), name: object()}
    if method == "__init__":
        message = refused(Model, **arguments)
    else:
        model = Model(str(llama_dir))
        message = refused(getattr(model, method), **arguments)
        assert model.loads == 0, "refused before loading"
    assert message.startswith(f"{name}=<object ")
    assert f"is an object; {name} takes " in message


LAYERS_TAKE = ('layers takes a layer number (e.g. 0, or -1 for the last), a list of them, or '
               'text such as "0,2-5" or "all"')
BAD = {
    "layers float": ("capture", {"layers": 1.0}, f"layers=1.0 is a float; {LAYERS_TAKE}"),
    "layers None": ("neurons", {"layers": None}, f"layers=None is None; {LAYERS_TAKE}"),
    "layers nested": ("capture", {"layers": [[0]]},
                      "layers holds a list [0]; a layer is a whole number (e.g. 0, or -1 for "
                      "the last)"),
    "layers True": ("capture", {"layers": True}, f"layers=True is a bool; {LAYERS_TAKE}"),
    "layers [0.9]": ("ablate", {"layers": [0.9], "neurons": [1]},
                     "layers holds a float 0.9; a layer is a whole number"),
    "layers dict": ("probe", {"layers": {1: 2}}, f"layers={{1: 2}} is a dict; {LAYERS_TAKE}"),
    "examples layer True": ("examples", {"layer": True}, "layer=True is a bool; layer takes"),
    "steer neurons list": ("steer", {"layer": 0, "neurons": [1, 2]},
                           "neurons=[1, 2] is a list; neurons takes {neuron id: value} (e.g. "
                           "neurons={808: 2.5, 1190: -1.0})"),
    "steer neurons negative": ("steer", {"layer": 0, "neurons": {-1: 2.0}},
                               "neuron id -1 is not a whole number from 0"),
    "steer neuron value": ("steer", {"layer": 0, "neurons": {1: float("nan")}},
                           "neurons[1]=nan is not finite; neurons[1] takes a finite number"),
    "steer neurons empty": ("steer", {"layer": 0, "neurons": {}}, "neurons={} is empty"),
    "coefficients text": ("steer", {"layer": 0, "neurons": {1: 2.0}, "coefficients": "2"},
                          "coefficients='2' is a str; coefficients takes a list of numbers"),
    "coefficient bool": ("steer", {"layer": 0, "neurons": {1: 2.0}, "coefficients": [True]},
                         "coefficients[0]=True is a bool; coefficients[0] takes a number"),
    "steer layer float": ("steer", {"layer": 1.0, "neurons": {1: 2.0}},
                          "layer=1.0 is a float; layer takes a whole number"),
    "top_k bool": ("neurons", {"top_k": True}, "top_k=True is a bool; top_k takes a whole"),
    "seed float": ("ablate", {"layers": 0, "neurons": [1], "seed": 1.0},
                   "seed=1.0 is a float; seed takes a whole number"),
    "temperature nan": ("steer", {"layer": 0, "neurons": {1: 2.0}, "temperature": float("nan")},
                        "temperature=nan is not finite"),
    "flag number": ("ablate", {"layers": 0, "neurons": [1], "sweep": 1},
                    "sweep=1 is an int; sweep takes True or False"),
    "labels numbers": ("neurons", {"labels": [1, 2]},
                       "labels holds an int 1; labels takes strings only"),
    "prompt None": ("neurons", {"prompts": ["2+3=", None]},
                    "prompts holds None; prompts takes strings only"),
    "layers [None]": ("capture", {"layers": [None]},
                      "layers holds None; a layer is a whole number"),
    "answer count": ("ablate", {"layers": 0, "neurons": [1], "answers": ["4"]},
                     "got 1 answer for 2 prompts (give one answer per prompt)"),
    "tokens one string": ("steer", {"layer": 0, "neurons": {1: 2.0}, "tokens": "yes"},
                          "tokens='yes' is one string; tokens takes a list of strings (e.g. "
                          "tokens=['yes'])"),
    "labels as the CLI's text": ("neurons", {"labels": "easy|hard"},
                                 "labels='easy|hard' is one string; labels takes a list of "
                                 "strings (e.g. labels=['easy', 'hard'])"),
    "position bool": ("capture", {"position": True}, "position=True is a bool"),
    "probe result beating no chance as direction": (
        "neurons", {"direction": "PROBE"},
        "no layer beats chance (p = 0.0909 >= alpha 0.05), so there is no direction worth "
        "saving (add prompts, or force it with --force-save)"),
    "probe result beating no chance: the fix from Python": (
        "neurons", {"direction": "PROBE"},
        "; from Python, direction(force=True) or save_direction(path, force=True) takes the "
        "top layer's anyway"),
    "max_batch 0": ("examples", {"max_batch": 0}, "max_batch=0 is below 1"),
    "up_to_layer past the end": ("weights", {"up_to_layer": 4},
                                 "up_to_layer=4 is out of range; this model has layers 0 to 3"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_wrong_values_are_one_line_before_loading(llama_dir, tmp_path, case):
    method, arguments, expected = BAD[case]
    if arguments.get("direction") == "PROBE":
        probe = Model(str(llama_dir)).probe(["2+2=", "3+3=", "1+1=", "4+4="],
                                            ["47*47=", "38*92=", "74*21=", "19*83="],
                                            layers=0, permutations=10)
        arguments = {"direction": probe}
    model = Model(str(llama_dir))
    message = refused(getattr(model, method),
                      **{**required(method, llama_dir, tmp_path), **arguments})
    assert expected in message
    assert model.loads == 0


@pytest.mark.parametrize(("arguments", "expected"), [
    ({"dtype": "float8"}, "dtype='float8' is an unknown value; dtype takes one of 'auto', "
                          "'float32', 'float16', 'bfloat16'"),
    ({"device": "gpu"}, "device='gpu' is an unknown value; device takes one of 'auto', 'cpu', "
                        "'cuda', 'mps'"),
    ({"device_map": "balanced"}, "device_map='balanced' is an unknown value; device_map takes "
                                 "one of 'auto' or None"),
    ({"trust_remote_code": "no"}, "trust_remote_code='no' is a str; trust_remote_code takes "
                                  "True or False"),
    ({"use_cache": None}, "use_cache=None is None; use_cache takes True or False"),
])
def test_load_refuses_settings_it_does_not_run_with(llama_dir, arguments, expected):
    assert refused(lazarus.load, str(llama_dir), **arguments) == expected


def test_numpy_integers_tuples_generators_and_paths_are_taken_as_plain_values(llama_dir):
    """What a script naturally passes works, and reads what the plain values read."""
    plain = Model(str(llama_dir), use_cache=False).capture(PROMPTS, layers=1)
    model = Model(Path(llama_dir), use_cache=False)
    given = model.capture((p for p in PROMPTS), layers=np.int64(1), position=np.int64(-1))
    assert given.prompts == tuple(PROMPTS)
    assert given.layers == (1,)
    assert np.array_equal(given.to_numpy(1), plain.to_numpy(1))
    assert model.layers(np.array([0, -1])) == (0, 3)
    result = model.neurons(PROMPTS, layers=(1,), neurons=np.array([3, 5]))
    assert result.neurons == (3, 5)
