"""`hf:<sentence-transformers folder>` runs the folder's modules.json (Pooling, Dense, Normalize) and reads its prompts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import finetuner
from finetuner.prompts import prompts_of
from tests.text.tiny_models import write_bert

st = pytest.importorskip("sentence_transformers", reason="sentence-transformers is not installed")
torch = pytest.importorskip("torch")

TEXTS = ["hello world", "a short text", "the query and the document of a longer search text", ""]
PROMPTS = {"query": "query: ", "document": "passage: "}


def write_st_folder(directory: Path, pooling: str = "mean", dense: bool = True, **options) -> Path:
    """A sentence-transformers folder saved by that library: tiny BERT, Pooling, Dense 32->16 with tanh, Normalize."""
    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers 6 moved them
        from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer
    except ImportError:
        from sentence_transformers.models import Dense, Normalize, Pooling, Transformer

    bert = write_bert(directory.parent / f"{directory.name}-bert", hidden=32, cased=False, seed=5)
    torch.manual_seed(7)
    modules = [Transformer(str(bert), max_seq_length=64), Pooling(32, pooling)]
    if dense:
        modules += [Dense(32, 16, activation_function=torch.nn.Tanh()), Normalize()]
    SentenceTransformer(modules=modules, device="cpu", **options).save(str(directory))
    return directory


def theirs(folder: Path, texts=TEXTS, **options) -> np.ndarray:
    return st.SentenceTransformer(str(folder), device="cpu", local_files_only=True).encode(texts, **options)


def module_types(folder: Path) -> list[str]:
    return [m["type"].rsplit(".", 1)[-1] for m in json.loads((folder / "modules.json").read_text())]


@pytest.fixture(scope="module")
def st_folder(tmp_path_factory) -> Path:
    return write_st_folder(tmp_path_factory.mktemp("st") / "model", prompts=PROMPTS)


def test_dense_with_tanh_and_normalize_embed_as_sentence_transformers(st_folder):
    model = finetuner.build_model(f"hf:{st_folder}")
    assert model.output_dim == 16 and model.tower().output_dim == 16
    ours = finetuner.encode(model, TEXTS, precision="fp32", batch_size=3)
    np.testing.assert_allclose(ours, theirs(st_folder), atol=1e-5)
    assert isinstance(model.tower().after_pooling[0].activation_function, torch.nn.Tanh)
    query = finetuner.encode(model, TEXTS, precision="fp32", prompt_name="query")
    np.testing.assert_allclose(query, theirs(st_folder, prompt_name="query"), atol=1e-5)
    assert not np.allclose(query, ours, atol=1e-3)  # the prompt changes the embeddings


@pytest.mark.parametrize("pooling", ["cls", "max", "lasttoken"])
def test_pooling_modes_of_a_folder(tmp_path, pooling):
    folder = write_st_folder(tmp_path / "model", pooling=pooling)
    ours = finetuner.encode(finetuner.build_model(f"hf:{folder}"), TEXTS, precision="fp32")
    np.testing.assert_allclose(ours, theirs(folder), atol=1e-5)


def test_a_folder_without_normalize_gives_its_dense_output(tmp_path):
    folder = write_st_folder(tmp_path / "model")
    modules = json.loads((folder / "modules.json").read_text())
    (folder / "modules.json").write_text(json.dumps(modules[:-1]))  # drop Normalize
    model = finetuner.build_model(f"hf:{folder}", normalize=False)
    ours = finetuner.encode(model, TEXTS, precision="fp32")
    np.testing.assert_allclose(ours, theirs(folder), atol=1e-5)
    assert not np.allclose(np.linalg.norm(ours, axis=1), 1.0)
    exported = finetuner.export_sentence_transformers(model, tmp_path / "export")
    assert module_types(exported) == ["Transformer", "Pooling", "Dense"]


def test_a_normalize_between_dense_modules_stays_in_the_tower(tmp_path):
    folder = write_st_folder(tmp_path / "model")
    modules = json.loads((folder / "modules.json").read_text())
    second = {"idx": 4, "name": "4", "path": "4_Dense", "type": modules[2]["type"]}
    (folder / "4_Dense").mkdir()
    torch.manual_seed(3)
    weights = {"linear.weight": torch.randn(8, 16), "linear.bias": torch.randn(8)}
    from safetensors.torch import save_file

    save_file(weights, str(folder / "4_Dense" / "model.safetensors"))
    config = json.loads((folder / "2_Dense" / "config.json").read_text()) | {"in_features": 16, "out_features": 8}
    (folder / "4_Dense" / "config.json").write_text(json.dumps(config))
    (folder / "modules.json").write_text(json.dumps([*modules, second]))  # Dense, Normalize, Dense: no final Normalize
    model = finetuner.build_model(f"hf:{folder}", normalize=False)
    assert model.output_dim == 8
    np.testing.assert_allclose(finetuner.encode(model, TEXTS, precision="fp32"), theirs(folder), atol=1e-5)
    exported = finetuner.export_sentence_transformers(model, tmp_path / "export")
    assert module_types(exported) == ["Transformer", "Pooling", "Dense", "Normalize", "Dense"]
    np.testing.assert_allclose(theirs(exported), theirs(folder), atol=1e-5)


def test_export_writes_the_dense_and_prompts_again(st_folder, tmp_path):
    model = finetuner.build_model(f"hf:{st_folder}")
    folder = finetuner.export_sentence_transformers(model, tmp_path / "export")
    assert module_types(folder) == ["Transformer", "Pooling", "Dense", "Normalize"]
    dense = json.loads((folder / "2_Dense" / "config.json").read_text())
    assert dense["activation_function"] == "torch.nn.modules.activation.Tanh" and dense["out_features"] == 16
    config = json.loads((folder / "config_sentence_transformers.json").read_text())
    assert config["prompts"] == PROMPTS and config["similarity_fn_name"] == "cosine"
    ours = finetuner.encode(model, TEXTS, precision="fp32", prompt_name="query")
    np.testing.assert_allclose(theirs(folder, prompt_name="query"), ours, atol=1e-5)
    np.testing.assert_allclose(theirs(folder), theirs(st_folder), atol=1e-5)


def test_a_projection_head_follows_the_folders_modules(st_folder, tmp_path):
    model = finetuner.build_model(f"hf:{st_folder}", output_dim=8)
    folder = finetuner.export_sentence_transformers(model, tmp_path / "export")
    assert module_types(folder) == [
        "Transformer",
        "Pooling",
        "Dense",
        "Dense",
        "Normalize",
    ]  # the folder's Normalize is the model's
    assert json.loads((folder / "3_Dense" / "config.json").read_text())["in_features"] == 16
    np.testing.assert_allclose(theirs(folder), finetuner.encode(model, TEXTS, precision="fp32"), atol=1e-5)


def test_an_artifact_keeps_the_modules_and_prompts(st_folder, tmp_path):
    model = finetuner.build_model(f"hf:{st_folder}")
    with torch.no_grad():
        model.tower().after_pooling[0].linear.weight.mul_(2)  # the artifact's weights, not the folder's, come back
    finetuner.save(model, tmp_path / "artifact")
    config = json.loads((tmp_path / "artifact" / "finetuner.json").read_text())
    assert config["prompts"] == PROMPTS and config["default_prompt_name"] is None
    loaded = finetuner.load(tmp_path / "artifact")
    assert prompts_of(loaded) == PROMPTS
    np.testing.assert_allclose(
        finetuner.encode(loaded, TEXTS, precision="fp32"), finetuner.encode(model, TEXTS, precision="fp32"), atol=1e-6
    )


def _edit(folder: Path, name: str, change) -> None:
    path = folder / name
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        (
            "modules.json",
            lambda m: [*m[:2], {"idx": 2, "name": "2", "path": "2_LayerNorm", "type": "sentence_transformers.models.LayerNorm"}],
            "module 2 ('2', type sentence_transformers.models.LayerNorm) is not one finetuner can run",
        ),
        (
            "modules.json",
            lambda m: [m[0], m[2], m[1]],
            "module 1 (sentence_transformers.base.modules.dense.Dense) should be a Pooling",
        ),
        (
            "2_Dense/config.json",
            lambda c: c | {"activation_function": "os.system"},
            "activation_function 'os.system' is not a torch.nn module",
        ),
        ("1_Pooling/config.json", lambda c: c | {"include_prompt": False}, "include_prompt false"),
        ("1_Pooling/config.json", lambda c: c | {"pooling_mode": "weightedmean"}, "asks for pooling ['weightedmean']"),
        (
            "config_sentence_transformers.json",
            lambda c: c | {"similarity_fn_name": "euclidean"},
            "similarity_fn_name 'euclidean' is not supported",
        ),
        (
            "config_sentence_transformers.json",
            lambda c: c | {"default_prompt_name": "title"},
            "default_prompt_name 'title' is none of its prompts",
        ),
    ],
)
def test_what_finetuner_cannot_run_is_refused_naming_the_module_and_folder(st_folder, tmp_path, name, change, message):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(st_folder, folder)
    _edit(folder, name, change)
    with pytest.raises(finetuner.FinetunerError) as error:
        finetuner.build_model(f"hf:{folder}")
    assert message in str(error.value) and str(folder) in str(error.value)


def test_a_dot_product_folder_without_normalize_exports_as_dot(tmp_path):
    folder = write_st_folder(tmp_path / "model", dense=False, similarity_fn_name="dot")
    model = finetuner.build_model(f"hf:{folder}", normalize=False)
    np.testing.assert_allclose(finetuner.encode(model, TEXTS, precision="fp32"), theirs(folder), atol=1e-5)
    finetuner.save(model, tmp_path / "artifact")
    exported = finetuner.export_sentence_transformers(tmp_path / "artifact", tmp_path / "export")
    assert json.loads((exported / "config_sentence_transformers.json").read_text())["similarity_fn_name"] == "dot"
    assert module_types(exported) == ["Transformer", "Pooling"]
