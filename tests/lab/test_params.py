"""Notebook parameters are checked by fedlib first (issue 29 §3): `fedlib.lab.params.check`, the
call right after each notebook's parameters cell, refuses in one line what papermill was given
that the notebook cannot use; every profile's parameters pass."""

import json

import pytest

from fedlib.lab import books, params


@pytest.mark.parametrize(("bad", "message"), [
    ({"engines_mode": "bogus"},
     "08_async: parameter engines_mode is 'bogus'; it takes one of mpi | local | connect"),
    ({"buffer_sizes": [3]}, "08_async: parameter buffer_sizes is [3]; it takes FedBuff buffer sizes K that "
                            "divide concurrency=4"),
    ({"rounds": "3"}, "08_async: parameter rounds is '3'; it takes a whole number"),
    ({"seeds": [0.5]}, "08_async: parameter seeds is [0.5]; it takes a list of whole numbers"),
    ({"async_alpha": True}, "08_async: parameter async_alpha is True; it takes a number"),
    ({"speed": 3}, "08_async: parameter speed is 3; it takes a mapping"),
    ({"target": "0.5"}, "08_async: parameter target is '0.5'; it takes null (a pilot on pilot_seeds "
                        "fixes it) or an accuracy strictly between 0 and 1"),
    ({"target": 51}, "08_async: parameter target is 51; it takes null"),
    ({"bogus_key": 1}, "08_async: unknown parameter 'bogus_key'; it takes profile, out_dir, engines_mode"),
])
def test_a_parameter_the_notebook_cannot_use_is_refused_in_one_line(bad, message):
    with pytest.raises(params.ParameterError) as e:
        params.check("08_async", {**params.declared("08_async"), **bad})
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_every_profile_passes_and_the_kernel_names_are_not_parameters():
    checked = 0
    for nb in books.available():
        defaults = params.declared(nb)
        params.check(nb, {**defaults, "In": [], "get_ipython": print, "_i1": "", "json": json})
        for profile in sorted(p.name for p in books.PARAMS.iterdir() if p.is_dir()):
            if (books.PARAMS / profile / f"{nb}.yaml").is_file():
                params.check(nb, {**defaults, **books.parameters(profile, nb)})
                checked += 1
    assert checked >= 30
    none = {"deadline_quantile": None, "train_samples": None, "target": None}  # the optional ones
    params.check("08_async", {**params.declared("08_async"), **none})
    params.check("08_async", {**params.declared("08_async"), "target": 0.49})


def test_every_notebook_checks_its_parameters_right_after_them():
    for nb in books.available():
        cells = json.loads((books.NOTEBOOKS / f"{nb}.ipynb").read_text())["cells"]
        i = next(k for k, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", []))
        assert f'params.check("{nb}", globals())' in "".join(cells[i + 1]["source"]), nb
