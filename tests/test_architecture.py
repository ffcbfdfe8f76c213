import json
import random
from collections import Counter
from pathlib import Path

import pytest

from hyctas_lightning.search_space import Architecture, ArchitectureError, Branch, SearchSpace

PRESETS = sorted(Path(__file__).resolve().parents[1].glob("src/hyctas_lightning/models/presets/hyctas_*.json"))


def make_branch(n, downs=(), ops="conv", width=1.0, nodes=None):
    return Branch(ops=[ops] * n, widths=[width] * n, downs=[int(i in downs) for i in range(n)],
                  nodes=nodes or ["pass"] * n)


def test_presets_load_and_validate():
    assert [p.stem for p in PRESETS] == ["hyctas_l", "hyctas_m", "hyctas_m_paper", "hyctas_s", "hyctas_s_paper"]
    for path in PRESETS:
        arch = Architecture.load(path)
        assert arch.validate() is arch


@pytest.mark.parametrize("layers", [6, 16])
def test_json_and_gene_round_trips(layers):
    space = SearchSpace(layers=layers)
    rng = random.Random(1)
    for i in range(150):
        arch = space.sample(rng, branches=1 + i % 3)
        again = Architecture.from_json(arch.to_json())
        assert again == arch and again.hash == arch.hash
        genes = arch.to_genes(space)
        assert len(genes) == len(space.gene_cardinalities())
        assert all(0 <= g < c for g, c in zip(genes, space.gene_cardinalities()))
        back = Architecture.from_genes(genes, space)
        assert back == arch and back.hash == arch.hash


def test_preset_json_round_trip():
    for path in PRESETS:
        arch = Architecture.load(path)
        assert Architecture.from_json(arch.to_json()) == arch


def test_hash_is_stable_and_ignores_genes_of_dropped_cells():
    b = make_branch(4, downs=(1, 2), nodes=["pass", "pass", "pass", "drop"])
    arch = Architecture((b,))
    other = Architecture((Branch(ops=["conv", "conv", "conv", "mesa"], widths=[1, 1, 1, 0.5], downs=b.downs,
                                 nodes=b.nodes),))
    assert arch != other and arch.hash == other.hash
    assert arch.hash == Architecture.from_json(arch.to_json()).hash
    assert len(arch.hash) == 16
    changed = Architecture((make_branch(4, downs=(1, 2), ops="mesa"),))
    assert changed.hash != arch.hash


def test_branch_order_is_canonical():
    b8, b16 = make_branch(5), make_branch(5, downs=(2,), ops="mesa")
    assert Architecture((b16, b8)) == Architecture((b8, b16))
    assert Architecture((b16, b8)).end_scales == (8, 16)


@pytest.mark.parametrize("arch, constraint", [
    (Architecture(()), "constraint 1"),
    # two separate paths (different ops) down-sample at layer 2
    (Architecture((make_branch(5, downs=(2,)), make_branch(5, downs=(2, 3), ops="mesa"), make_branch(5))),
     "constraint 2"),
    (Architecture((make_branch(4, downs=(1, 2), nodes=["pass", "drop", "pass", "pass"]),)), "constraint 3"),
])
def test_validate_rejects_each_constraint(arch, constraint):
    with pytest.raises(ArchitectureError, match=constraint):
        arch.validate()


def test_shared_down_is_one_downsampling():
    # the 16 and 32 branches share layers 0..2 including the down at layer 1: one computation, allowed
    b16 = Branch(ops=["conv"] * 5, widths=[1] * 5, downs=[0, 1, 0, 0, 0], nodes=["pass"] * 5)
    b32 = Branch(ops=["conv"] * 3 + ["mesa"] * 2, widths=[1] * 5, downs=[0, 1, 0, 1, 0], nodes=["pass"] * 5)
    arch = Architecture((make_branch(5, ops="mesa"), b16, b32)).validate()
    assert arch.groups(2) == ((0,), (1, 2))
    assert arch.groups(3) == ((0,), (1,), (2,))


def test_validate_memory_constraint():
    arch = SearchSpace().largest()
    with pytest.raises(ArchitectureError, match="constraint 4"):
        arch.validate(memory_limit_gb=0.5)
    arch.validate(memory_limit_gb=1000)


@pytest.mark.parametrize("end_downs", [[(1,), (1, 2)], [(1,), (2, 3)]])
def test_validate_rejects_output_combinations_outside_the_six(end_downs):
    arch = Architecture(tuple(make_branch(5, downs=d, ops=op) for d, op in zip(end_downs, ("conv", "mesa"))))
    with pytest.raises(ArchitectureError, match="output combinations"):
        arch.validate()


def _preset_dict():
    return json.loads(PRESETS[0].read_text())


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["branches"][0]["ops"].__setitem__(2, "warp_drive"), r"branches\[0\]\.ops\[2\]: unknown op"),
    (lambda d: d["branches"][0]["widths"].pop(), r"branches\[0\]\.widths: expected"),
    (lambda d: d["branches"][0]["nodes"].append("pass"), r"branches\[0\]\.nodes: expected"),
    (lambda d: d["branches"][0].pop("downs"), r"branches\[0\]\.downs: missing"),
    (lambda d: d.__setitem__("colour", "red"), r"colour: unknown field"),
    (lambda d: d.__setitem__("fch", "twelve"), r"fch: expected an integer"),
    (lambda d: d.__setitem__("output_stride", 16), r"output_stride: must be 8 or 4"),
    (lambda d: d.__setitem__("head", 3), r"head: expected a registered name"),
    (lambda d: d["branches"][0]["widths"].__setitem__(0, 1.5), r"branches\[0\]\.widths\[0\]"),
    (lambda d: d["branches"][0]["nodes"].__setitem__(0, "teleport"), r"branches\[0\]\.nodes\[0\]"),
    (lambda d: d.pop("branches"), r"branches: missing"),
])
def test_from_json_names_the_broken_field(mutate, field):
    data = _preset_dict()
    mutate(data)
    with pytest.raises(ArchitectureError, match=field):
        Architecture.from_json(json.dumps(data))


def test_json_written_before_heads_were_selectable_loads_with_the_defaults():
    data = _preset_dict()
    for key in ("head", "classifier"):
        data.pop(key)
    arch = Architecture.from_json(json.dumps(data))
    assert (arch.head, arch.classifier) == ("progressive", "linear")
    assert Architecture.load(PRESETS[0]).head == "progressive"
    explicit = Architecture.from_json(json.dumps({**data, "head": "plain", "classifier": "attention"}))
    assert (explicit.head, explicit.classifier) == ("plain", "attention") and explicit.hash != arch.hash


def test_from_json_malformed_and_load_names_the_file(tmp_path):
    with pytest.raises(ArchitectureError, match="malformed at line"):
        Architecture.from_json('{"branches": [')
    bad = tmp_path / "bad.json"
    bad.write_text('{"branches": 3}')
    with pytest.raises(ArchitectureError, match="bad.json: branches: expected a list"):
        Architecture.load(bad)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        Architecture.load(tmp_path / "missing.json")


def test_from_genes_rejects_invalid_vectors():
    space = SearchSpace(layers=6)
    genes = space.largest().to_genes(space)
    with pytest.raises(ArchitectureError, match="expected"):
        space.decode(genes[:-1])
    with pytest.raises(ArchitectureError, match=r"genes\[1\]: value 7"):
        space.decode([genes[0], 7] + genes[2:])
    # drop the cell where a branch down-samples: constraint 3
    broken = list(genes)
    per_layer, step = 4, 4 * space.layers
    slot = 2  # the 32-branch down-samples at layer 0 and 1
    broken[1 + slot * step + 1 * per_layer + 3] = space.nodes.index("drop")
    with pytest.raises(ArchitectureError, match="constraint"):
        space.decode(broken)


def test_sampling_covers_the_space_and_follows_the_prior():
    space = SearchSpace(layers=8)
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(600)]
    counts = Counter(a.num_branches for a in archs)
    for n, p in zip((1, 2, 3), space.branch_prior):
        assert abs(counts[n] / 600 - p) < 0.06
    assert {op for a in archs for b in a.branches for op in b.ops} == set(space.ops)
    assert {n for a in archs for b in a.branches for n in b.nodes} == set(space.nodes)
    assert {a.end_scales for a in archs} == {(8,), (16,), (32,), (8, 16), (8, 32), (8, 16, 32)}
    # forked branches share computation for a while in a good share of multi-branch samples
    multi = [a for a in archs if a.num_branches > 1]
    assert sum(len(a.groups(0)) < a.num_branches for a in multi) > 0.3 * len(multi)


def test_largest_and_smallest():
    space = SearchSpace()
    big, small = space.largest(), space.smallest()
    assert big.num_branches == 3 and small.num_branches == 1
    assert set(big.branches[0].widths) == {1.0}
    assert set(small.branches[0].widths) == {min(space.width_choices)}


def test_search_space_rejects_bad_settings():
    with pytest.raises(KeyError, match="unknown operator 'nope'"):
        SearchSpace(ops=("conv", "nope"))
    with pytest.raises(ValueError, match="branch_prior"):
        SearchSpace(branch_prior=(0.5, 0.5, 0.5))
    with pytest.raises(ArchitectureError, match="width choices"):
        SearchSpace(width_choices=(0.5, 1.0)).validate(Architecture((make_branch(4, width=0.25, downs=(1,)),)))
