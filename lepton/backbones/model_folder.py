"""A model folder (or a hub snapshot) is untrusted input: check it before transformers reads any of it.

    check_model_folder(path, where=None) -> CheckedFolder(path, config, params)

One place for every rule, used when a backbone name is resolved (so `lepton train` and the Train
page refuse a bad folder at once, before a run exists) and again by the loader (the files may have
changed in between). A folder passes when:
- it is a folder, and every file read below is a regular file (a FIFO would block the reader);
- config.json and the other JSON files transformers reads parse as JSON objects;
- none of them has an `auto_map`: that names Python files in the folder, which transformers would
  import, and so run, if it were ever allowed to (Lepton always passes trust_remote_code=False);
- config.json's model_type is an architecture transformers' AutoModel has built in;
- its weights are safetensors (model.safetensors, or the shards an index names) whose headers
  are whole. A pickle checkpoint (pytorch_model.bin, *.pt, *.ckpt) is never loaded: unpickling runs
  whatever code the file carries.
Every refusal is one ModelError line naming the folder, what is wrong and what to do.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lepton import filetypes
from lepton.errors import ModelError

# The JSON files transformers reads from a folder (AutoConfig, AutoModel, tokenizers, processors).
READ_JSON = ("config.json", "generation_config.json", "model.safetensors.index.json", "tokenizer_config.json",
             "tokenizer.json", "special_tokens_map.json", "added_tokens.json", "vocab.json",
             "preprocessor_config.json", "processor_config.json", "feature_extractor_config.json",
             "image_processor_config.json")
JSON_LIMIT = 256 * 1024**2  # a large tokenizer.json is ~30 MB; more is not a model file
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
CONVERT = ("convert it to safetensors on a machine where you trust the file: `python -c \"from transformers import "
           "AutoModel; AutoModel.from_pretrained('FOLDER').save_pretrained('FOLDER')\"` writes model.safetensors")
# Any one of these lets AutoTokenizer build the model's own tokenizer. Without them transformers 5
# quietly builds an empty vocabulary, and every text becomes [UNK].
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                   "sentencepiece.bpe.model", "tokenizer.model")
EXAMPLES = ("bert", "roberta", "distilbert", "modernbert", "vit", "convnext", "dinov2", "clip", "wav2vec2", "hubert",
            "whisper")


@dataclass
class CheckedFolder:
    path: Path
    config: dict[str, Any]
    params: int  # from the safetensors headers; no tensor is read


def supported_model_types() -> list[str]:
    """The model_type values transformers' AutoModel can build without code from the folder."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    return sorted(MODEL_MAPPING_NAMES)


def _regular(path: Path, where: str) -> None:
    what = filetypes.special(path)
    if what:
        raise ModelError(f"{where}: `{path.name}` is {what}, not a regular file: replace it with the real file")


def _json(path: Path, where: str) -> Any:
    _regular(path, where)
    size = path.stat().st_size
    if size > JSON_LIMIT:
        raise ModelError(f"{where}: `{path.name}` is {size // 1024**2} MB, too large for a model's JSON file: "
                         "replace it with the file save_pretrained writes")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        problem = "is not UTF-8 text"
    except ValueError as e:
        problem = f"is not valid JSON ({e})"
    raise ModelError(f"{where}: `{path.name}` {problem}: it is damaged; save the model again (save_pretrained) "
                     "or download it again")


def _targets(auto_map: Any) -> str:
    """`AutoModel -> modeling_evil.EvilModel, …`: what the folder wants transformers to import."""
    if not isinstance(auto_map, dict):
        return str(auto_map)[:80]
    def name(v: Any) -> str:
        return " / ".join(str(x) for x in v if x) if isinstance(v, (list, tuple)) else str(v)

    pairs = [f"{k} -> {name(v)}" for k, v in auto_map.items()]
    return ", ".join(pairs[:3]) + (", …" if len(pairs) > 3 else "")


def _refuse_code(jsons: dict[str, Any], folder: Path, where: str) -> None:
    code = [f"`{n}` ({_targets(d['auto_map'])})" for n, d in jsons.items() if isinstance(d, dict) and "auto_map" in d]
    if not code:
        return
    py = sorted(p.name for p in folder.glob("*.py"))
    ships = f" ({', '.join(py)})" if py else ""
    raise ModelError(
        f"{where} asks to run its own Python code{ships}: `auto_map` in {'; '.join(code)}. Lepton never runs code from "
        "a model folder or hub repository: use a model whose architecture transformers has built in (`lepton "
        "backbones --model-types` lists them)"
    )


def _check_model_type(config: dict[str, Any], where: str) -> None:
    mt = config.get("model_type")
    if not isinstance(mt, str) or not mt:
        raise ModelError(f"{where}: config.json has no model_type, so transformers cannot tell which architecture it "
                         "is: save the model with save_pretrained, which writes it")
    known = supported_model_types()
    if mt in known:
        return
    close = difflib.get_close_matches(mt, known, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ModelError(
        f"{where}: config.json has model_type '{mt}', which transformers' AutoModel does not know{hint}: use a model "
        f"of one of the {len(known)} architectures it has built in (e.g. {', '.join(EXAMPLES)}; `lepton backbones "
        "--model-types` lists them all)"
    )


def _shards(folder: Path, jsons: dict[str, Any], where: str) -> list[Path]:
    """The safetensors files AutoModel will read, or a ModelError saying why there are none usable."""
    if INDEX in jsons:
        weight_map = jsons[INDEX].get("weight_map") if isinstance(jsons[INDEX], dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelError(f"{where}: `{INDEX}` has no weight_map: save the model again (save_pretrained)")
        names = sorted({str(v) for v in weight_map.values()})
        # A shard name is joined to the folder: a path in it could make the loader read anything.
        odd = [n for n in names if Path(n).name != n or n in ("", ".", "..") or not n.endswith(".safetensors")]
        if odd:
            raise ModelError(f"{where}: `{INDEX}` names shards that are not safetensors files in the folder "
                             f"({', '.join(odd[:3])}): save the model again (save_pretrained)")
        missing = [n for n in names if not (folder / n).exists()]
        if missing:
            raise ModelError(f"{where} is missing {len(missing)} of the {len(names)} weight shards `{INDEX}` lists "
                             f"({', '.join(missing[:3])}): copy or download the whole folder")
        return [folder / n for n in names]
    if (folder / WEIGHTS).exists():
        return [folder / WEIGHTS]
    files = sorted(p.name for p in folder.iterdir())
    pickles = [n for n in files if n.endswith(PICKLE_SUFFIXES) or n == "pytorch_model.bin.index.json"]
    if pickles:
        raise ModelError(f"{where} has only a pickle checkpoint ({', '.join(pickles[:4])}): loading a pickle can run "
                         f"any code hidden in it, so Lepton loads only safetensors weights; {CONVERT}")
    other = [n for n in files if n.endswith((".safetensors", ".h5", ".msgpack", ".onnx", ".gguf"))]
    found = f" (it has {', '.join(other[:4])}, which AutoModel does not load as a model)" if other else ""
    raise ModelError(f"{where} has no weights: it needs {WEIGHTS} (or {INDEX} and its shards), as save_pretrained "
                     f"writes{found}")


def _header_params(path: Path, where: str) -> int:
    """Parameter count from a safetensors header; a torn or foreign file fails here, cheaply."""
    import numpy as np
    from safetensors import safe_open

    _regular(path, where)
    try:
        with safe_open(str(path), framework="pt") as st:
            return sum(int(np.prod(st.get_slice(k).get_shape())) for k in st.keys())
    except Exception as e:  # SafetensorError, or OSError; the message says which
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelError(f"{where}: `{path.name}` is not a valid safetensors file ({detail}): it is corrupt or "
                         "truncated; download or save the model again") from None


def check_model_folder(path: str | os.PathLike, where: str | None = None) -> CheckedFolder:
    """Every check above, in order; returns the parsed config. `where` names the folder in messages."""
    folder = Path(path).expanduser()
    where = where or f"model folder `{path}`"
    if not folder.exists():
        raise ModelError(f"{where} does not exist: check the path")
    if not folder.is_dir():
        what = filetypes.special(folder) or "a file"
        raise ModelError(f"{where} is {what}, not a folder: give the folder save_pretrained wrote "
                         "(config.json and model.safetensors)")
    if not (folder / "config.json").exists():
        raise ModelError(f"{where} has no config.json, so it is not a saved Hugging Face model: save it with "
                         "save_pretrained, which writes config.json and model.safetensors")
    jsons = {n: _json(folder / n, where) for n in READ_JSON if (folder / n).exists()}
    config = jsons["config.json"]
    if not isinstance(config, dict):
        raise ModelError(f"{where}: config.json is not a JSON object: save the model again (save_pretrained)")
    _refuse_code(jsons, folder, where)
    _check_model_type(config, where)
    params = sum(_header_params(p, where) for p in _shards(folder, jsons, where))
    return CheckedFolder(folder, config, params)


def check_preprocessing(folder: Path, modality: str, where: str) -> None:
    """The files that turn raw items into the model's inputs: a tokenizer for text, a preprocessor config otherwise."""
    if modality == "text":
        if not any((folder / f).exists() for f in TOKENIZER_FILES):
            raise ModelError(f"{where} has no tokenizer (none of {', '.join(TOKENIZER_FILES[:3])}, …): save the "
                             "tokenizer next to the model (tokenizer.save_pretrained on the same folder)")
    elif not (folder / "preprocessor_config.json").exists():
        raise ModelError(f"{where} has no preprocessor_config.json, so its {modality} inputs cannot be prepared: save "
                         "the image processor or feature extractor next to the model (save_pretrained on the same folder)")
