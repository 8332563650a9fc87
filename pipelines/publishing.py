"""Publishing to the Hub as diffusers' examples do: the repo is created before training (a bad token or
name fails early) and the output folder is uploaded at the end, without checkpoints, generated data or
logs unless asked. No local path is published: the card and ``erasediff_args.json`` are uploaded in a
public form (the base model as its Hub id, other local paths left out).

A finished folder can be published later, with the same rules:

    python -m pipelines.publishing OUTPUT_DIR --hub_model_id you/name [--private] [--push_checkpoints] ...
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import sys

from .errors import InputError, first_line
from .run_folder import LOCK_FILE

CHECKPOINT_PATTERNS = ("checkpoint-*", ".checkpoint-*")
GENERATED_DATA_PATTERNS = ("data/*",)
# Never worth uploading: partial writes of an interrupted run, and the running run's lock.
ALWAYS_IGNORED = ("*.partial", "*.partial/*", "*.deleting/*", "*.tmp", LOCK_FILE)


def check_hub_credentials(hub_token: str | None) -> None:
    """Refuses a push with no credentials at all (no --hub_token, no login, no HF_TOKEN)."""
    from huggingface_hub import get_token

    if not hub_token and not get_token():
        raise InputError("--push_to_hub needs Hub credentials: run `hf auth login` or set HF_TOKEN")


def upload_ignore_patterns(
    logging_dir: str, include_checkpoints: bool, include_data: bool, include_logs: bool
) -> list[str]:
    """Glob patterns (relative to the output folder) that the upload leaves out."""
    patterns = list(ALWAYS_IGNORED)
    if not include_checkpoints:
        patterns += [f"{p}/*" for p in CHECKPOINT_PATTERNS]
    if not include_data:
        patterns += list(GENERATED_DATA_PATTERNS)
    if not include_logs and not os.path.isabs(logging_dir):
        patterns.append(f"{logging_dir.strip('/')}/*")
    return patterns


def create_hub_repo(repo_name: str, token: str | None, private: bool) -> str:
    """Creates (or reuses) the model repo and returns its full id; Hub errors become one-line InputErrors."""
    from huggingface_hub import create_repo

    try:
        return create_repo(repo_id=repo_name, exist_ok=True, token=token, private=private).repo_id
    except Exception as error:  # HTTP, validation and connection errors alike: the user needs the cause
        raise InputError(
            f"--hub_model_id {repo_name}: the Hub refused to create the repo ({first_line(error)})"
        ) from error


_HUB_CACHE_FOLDER = re.compile(r"(?:^|/)models--([^/]+)--([^/]+)/snapshots/[^/]+/?$")


def public_base_model(path: str) -> str | None:
    """The Hub id a base model is known by: the id itself, or the ``models--owner--name`` a folder of the
    Hub cache came from; None for any other local folder."""
    from .loading import looks_like_hub_id

    if looks_like_hub_id(path):
        return path
    match = _HUB_CACHE_FOLDER.search(os.path.abspath(path).replace(os.sep, "/"))
    return f"{match.group(1)}/{match.group(2)}" if match else None


# Arguments that may name a folder on this machine (any other recorded value counts only if absolute).
PATH_ARGUMENTS = (
    "pretrained_model_name_or_path",
    "pretrained_vae_model_name_or_path",
    "output_dir",
    "cache_dir",
    "logging_dir",
    "forget_data_dir",
    "remain_data_dir",
    "forget_dataset_name",
    "remain_dataset_name",
    "resume_from_checkpoint",
    "evaluation_clip_model",
    "evaluation_classifier_model",
)


def _local_paths(recorded: dict) -> list[str]:
    """The recorded arguments that name something on this machine (each also as an absolute path), longest
    first, so that a path is replaced before any folder above it."""
    paths = []
    for key, value in recorded.items():
        if not isinstance(value, str) or not value:
            continue
        if os.path.isabs(value) or (key in PATH_ARGUMENTS and os.path.exists(value)):
            paths += [value, os.path.abspath(value)]
    return sorted(set(paths), key=len, reverse=True)


def public_arguments_record(recorded: dict) -> dict:
    """``erasediff_args.json`` as published: the base model as its Hub id (or null) and no other local path."""
    public = {}
    local = set(_local_paths(recorded))
    for key, value in recorded.items():
        if key == "pretrained_model_name_or_path":
            public[key] = public_base_model(value)
        else:
            public[key] = None if isinstance(value, str) and value in local else value
    return public


def _public_names(recorded: dict, repo_id: str) -> dict:
    """Each local path of the run → what is published instead: the base model's Hub id (or the placeholder
    BASE_MODEL), the repo id for the output folder, the folder name for anything else."""
    base = recorded["pretrained_model_name_or_path"]
    names = {}
    for path in _local_paths(recorded):
        if os.path.abspath(path) == os.path.abspath(base):
            names[path] = public_base_model(base) or "BASE_MODEL"
        elif os.path.abspath(path) == os.path.abspath(recorded["output_dir"]):
            names[path] = repo_id
        else:
            names[path] = os.path.basename(os.path.normpath(path))
    return names


def _replace_paths(text: str, names: dict) -> str:
    for path, public in names.items():  # longest first
        text = text.replace(path, public)
    return text


def public_json(path: str, recorded: dict, repo_id: str) -> bytes | None:
    """A JSON file of the folder (diffusers' configs record ``_name_or_path``) with its local paths replaced,
    or None when it holds none."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    names = _public_names(recorded, repo_id)
    if not any(local in text for local in names):
        return None
    return _replace_paths(text, names).encode()


def public_card_text(card_text: str, recorded: dict, repo_id: str) -> str:
    """The local card with every local path replaced (_public_names); without a known Hub id for the base
    model, ``base_model`` is left out of the metadata and a line says so. Raises InputError if a local path
    would still be published."""
    from huggingface_hub import ModelCard

    base_id = public_base_model(recorded["pretrained_model_name_or_path"])
    text = _replace_paths(card_text, _public_names(recorded, repo_id))
    card = ModelCard(text)
    card.data.base_model = base_id
    if base_id is None:
        card.text = card.text.replace(
            "## How to use",
            "The base model was a local folder whose Hub id is not known, so this card names no `base_model`; "
            "load your copy of it where the code says `BASE_MODEL`.\n\n## How to use",
            1,
        )
    published = str(card)
    leaked = [path for path in _local_paths(recorded) if path in published]
    if leaked:
        raise InputError(f"the model card would publish the local path {leaked[0]}; edit README.md and push again")
    return published


def publish_folder(
    output_dir: str, repo_id: str, token: str | None, ignore_patterns: list[str], commit_message: str
) -> list[str]:
    """Uploads ``output_dir`` to ``repo_id`` in one commit, without ``ignore_patterns``, with the card and
    the recorded arguments in their public form; returns the paths uploaded."""
    from huggingface_hub import CommitOperationAdd, HfApi

    from .model_card import CARD_FILE
    from .outputs import ARGS_FILE, read_recorded_arguments

    recorded = read_recorded_arguments(output_dir)
    if recorded is None:
        raise InputError(f"{output_dir} holds no {ARGS_FILE}: it is not a finished train_erasediff.py run")
    replaced = {ARGS_FILE: json.dumps(public_arguments_record(recorded), indent=2, sort_keys=True).encode()}
    card_path = os.path.join(output_dir, CARD_FILE)
    if os.path.isfile(card_path):
        with open(card_path, encoding="utf-8") as handle:
            replaced[CARD_FILE] = public_card_text(handle.read(), recorded, repo_id).encode()
    operations = []
    for root, _, names in os.walk(output_dir):
        for name in sorted(names):
            path = os.path.join(root, name)
            relative = os.path.relpath(path, output_dir).replace(os.sep, "/")
            if any(fnmatch.fnmatch(relative, pattern) for pattern in ignore_patterns):
                continue
            content = replaced.get(relative) or (
                public_json(path, recorded, repo_id) if name.endswith(".json") else None
            )
            content = content or path
            operations.append(CommitOperationAdd(path_in_repo=relative, path_or_fileobj=content))
    HfApi(token=token).create_commit(repo_id=repo_id, operations=operations, commit_message=commit_message)
    return [operation.path_in_repo for operation in operations]


def add_upload_choices(parser) -> None:
    """The switches for what else goes up with the model, shared by train_erasediff.py and
    ``python -m pipelines.publishing`` (read by :func:`upload_ignore_patterns`)."""
    parser.add_argument("--push_checkpoints", action="store_true", help="Also upload checkpoint-* folders.")
    parser.add_argument("--push_generated_data", action="store_true", help="Also upload the generated data/ folder.")
    parser.add_argument("--push_logs", action="store_true", help="Also upload the tracker logs.")


def main(argv: list[str] | None = None) -> int:
    """``python -m pipelines.publishing``: pushes a finished output folder to the Hub."""
    from .outputs import FINISHED_MARKERS
    from .run_folder import lock_holder

    parser = argparse.ArgumentParser(description="Push a finished train_erasediff.py output folder to the Hub.")
    parser.add_argument("output_dir", help="The run's --output_dir.")
    parser.add_argument("--hub_model_id", required=True, help="The repo to push to, e.g. you/sd14-no-van-gogh.")
    parser.add_argument("--hub_token", default=None, help="A token (default: `hf auth login` or HF_TOKEN).")
    parser.add_argument("--private", action="store_true", help="Create the repo as private.")
    add_upload_choices(parser)
    args = parser.parse_args(argv)
    try:
        if not any(os.path.exists(os.path.join(args.output_dir, m)) for m in FINISHED_MARKERS):
            raise InputError(f"{args.output_dir} holds no finished model (no {' or '.join(FINISHED_MARKERS)})")
        holder = lock_holder(args.output_dir)
        if holder:
            raise InputError(f"{args.output_dir} is in use by {holder}; push it when that run has ended")
        check_hub_credentials(args.hub_token)
        from .outputs import read_recorded_arguments

        logging_dir = (read_recorded_arguments(args.output_dir) or {}).get("logging_dir", "logs")
        repo_id = create_hub_repo(args.hub_model_id, args.hub_token, args.private)
        ignore = upload_ignore_patterns(logging_dir, args.push_checkpoints, args.push_generated_data, args.push_logs)
        uploaded = publish_folder(args.output_dir, repo_id, args.hub_token, ignore, "EraseDiff: erased model")
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"pushed {len(uploaded)} files of {args.output_dir} to https://huggingface.co/{repo_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
