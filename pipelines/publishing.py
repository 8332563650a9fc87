"""Publishing to the Hub as diffusers' examples do: the repo is created before training (a bad token or
name fails early) and the output folder is uploaded at the end, without checkpoints, generated data or
logs unless asked."""

from __future__ import annotations

import os

from .errors import InputError
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
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(f"--hub_model_id {repo_name}: the Hub refused to create the repo ({first_line})") from error


def upload_output(repo_id: str, output_dir: str, token: str | None, ignore_patterns: list[str]):
    """Uploads the output folder to the repo, leaving out ``ignore_patterns``; returns the commit info."""
    from huggingface_hub import upload_folder

    return upload_folder(
        repo_id=repo_id,
        folder_path=output_dir,
        commit_message="EraseDiff: erased model",
        ignore_patterns=ignore_patterns,
        token=token,
    )
