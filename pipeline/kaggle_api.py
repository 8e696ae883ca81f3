"""A thin adapter over the official `kaggle` Python client: credentials, errors, retries.

The client is imported lazily so that `--help` and offline work need neither credentials nor
network. Setting PIPELINE_KAGGLE_ENDPOINT (e.g. http://127.0.0.1:8765) sends every API call to
that server instead of api.kaggle.com: that is how the demo and the tests reach the sandbox.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

ENDPOINT_ENV = "PIPELINE_KAGGLE_ENDPOINT"
TOKEN_PAGE = "https://www.kaggle.com/settings/account"
CONNECT_TIMEOUT = 15.0  # seconds to open a connection
READ_TIMEOUT = 60.0  # seconds of silence from a connected server before the request is retried
T = TypeVar("T")


class KaggleError(RuntimeError):
    """A Kaggle API call failed; the message says what to do."""


class CredentialsMissingError(KaggleError):
    """No Kaggle credentials were found in any of the usual places."""


class CredentialsRejectedError(KaggleError):
    """Kaggle answered 401: the credentials are wrong or revoked."""


class RulesNotAcceptedError(KaggleError):
    """Kaggle answered 403: usually the competition's rules are not accepted yet."""


class CompetitionNotFoundError(KaggleError):
    """Kaggle answered 404 for the competition."""


class KaggleNetworkError(KaggleError):
    """Kaggle could not be reached, or kept failing, after every retry."""


class KernelError(KaggleError):
    """Kaggle refused a kernel push, or a kernel's status or outputs cannot be had."""


class SubmissionUploadError(KaggleError):
    """The submission file did not reach Kaggle (the client returns a message instead of raising)."""


def _config_dir(environ: dict[str, str]) -> Path:
    if environ.get("KAGGLE_CONFIG_DIR"):
        return Path(environ["KAGGLE_CONFIG_DIR"])
    legacy = Path(environ.get("HOME", str(Path.home()))) / ".kaggle"
    if legacy.exists():
        return legacy
    return (
        Path(environ.get("XDG_CONFIG_HOME") or Path(environ.get("HOME", str(Path.home()))) / ".config")
        / "kaggle"
    )


def credentials_source(environ: dict[str, str] | None = None) -> str | None:
    """Where the client will find credentials (a description, never the secret), or None."""
    environ = dict(os.environ) if environ is None else environ
    if environ.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    if environ.get("KAGGLE_USERNAME") and environ.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME/KAGGLE_KEY"
    home = Path(environ.get("HOME", str(Path.home())))
    candidates = [
        _config_dir(environ) / "kaggle.json",
        home / ".kaggle" / "access_token",
        home / ".kaggle" / "credentials.json",
    ]
    return next((str(path) for path in candidates if path.is_file() and path.stat().st_size > 0), None)


def credentials_problem(source: str) -> str | None:
    """What is wrong with a kaggle.json file (never its key), or None when it looks usable."""
    path = Path(source)
    if path.name != "kaggle.json":
        return None
    try:
        values = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"{path} is not valid JSON ({type(error).__name__})"
    if not isinstance(values, dict) or not all(
        isinstance(values.get(k), str) and values[k] for k in ("username", "key")
    ):
        return f'{path} must hold {{"username": "...", "key": "..."}}'
    return None


def permissions_warning(source: str) -> str | None:
    """A warning when a credentials file is readable by other users (the key itself is never shown)."""
    path = Path(source)
    if not path.is_file() or os.name != "posix" or path.stat().st_mode & 0o077 == 0:
        return None
    return f"warning: {path} is readable by other users of this machine; protect it with `chmod 600 {path}`."


def endpoint() -> str:
    """The API endpoint requests go to: api.kaggle.com, or the sandbox's address."""
    return os.environ.get(ENDPOINT_ENV) or "https://api.kaggle.com"


@contextlib.contextmanager
def http_timeouts(connect: float, read: float) -> Iterator[None]:
    """Give every HTTP request made inside the block connect and read timeouts: the official client
    sends its API requests with none, so a server that accepts and never answers would hang it.
    requests has no public default timeout: the patch lasts only for the block (guarded by
    tests/unit/test_upstream_seams.py)."""
    import requests.adapters

    original = requests.adapters.HTTPAdapter.send

    def send(self: Any, request: Any, stream: bool = False, timeout: Any = None, **kwargs: Any) -> Any:
        return original(self, request, stream=stream, timeout=timeout or (connect, read), **kwargs)

    requests.adapters.HTTPAdapter.send = send
    try:
        yield
    finally:
        requests.adapters.HTTPAdapter.send = original


def _missing_credentials_message() -> str:
    return (
        "no Kaggle credentials found. Create an API token at "
        f"{TOKEN_PAGE} (API -> Create New Token), then either save the downloaded kaggle.json as "
        "~/.kaggle/kaggle.json (chmod 600), or export KAGGLE_USERNAME and KAGGLE_KEY, or export "
        "KAGGLE_API_TOKEN. To try the pipeline without an account run `make demo`."
    )


def _status(error: BaseException) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def _is_transient(error: BaseException) -> bool:
    import requests

    status = _status(error)
    if status is not None:
        return status >= 500 or status in (408, 429)
    return isinstance(
        error,
        requests.exceptions.ConnectionError
        | requests.exceptions.Timeout
        | requests.exceptions.ChunkedEncodingError,
    )


def upload_failed_message(api_class: type) -> str:
    """The message the official client answers a failed upload with: a constant of KaggleApi from
    kaggle 2.2.2 on, the same text written inline before (kaggle 2.2.1, which keras-hub's pins
    resolve to)."""
    return getattr(api_class, "COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE", "Could not submit to competition")


class KaggleGateway:
    """The few Kaggle API calls the pipeline makes, with clear errors and bounded retries."""

    def __init__(
        self,
        retries: int = 4,
        backoff_seconds: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        timeouts: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
    ):
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.timeouts = timeouts
        self._sleep = sleep
        self._api: Any = None

    def _client(self) -> Any:
        if self._api is not None:
            return self._api
        source = credentials_source()
        if source is None:
            raise CredentialsMissingError(_missing_credentials_message())
        problem = credentials_problem(source)
        if problem is not None:
            raise CredentialsMissingError(
                f"the Kaggle credentials file is unusable: {problem}. Download a new token at {TOKEN_PAGE} "
                "(API -> Create New Token) and save it there (chmod 600)."
            )
        warning = permissions_warning(source)
        if warning:
            print(warning, file=sys.stderr)
        endpoint = os.environ.get(ENDPOINT_ENV)
        if endpoint:  # no public setting takes a URL; tests/unit/test_upstream_seams.py guards this one
            from kagglesdk import kaggle_env

            kaggle_env._env_to_endpoint[kaggle_env.KaggleEnv.PROD] = endpoint.rstrip("/")
        # Importing `kaggle` authenticates and prints help on failure: keep its chatter out.
        with contextlib.redirect_stdout(io.StringIO()):
            from kaggle.api.kaggle_api_extended import KaggleApi

            api = KaggleApi()
            try:
                api.authenticate()
            except SystemExit as error:
                raise CredentialsRejectedError(
                    f"the Kaggle client could not sign in with the credentials from {source}: they are "
                    f"malformed, expired or revoked. Create a new API token at {TOKEN_PAGE} and replace them."
                ) from error
        self._api = api
        return api

    def _call(self, action: str, competition: str, fn: Callable[[Any], T], kernel: str = "") -> T:
        """Run `fn(client)`, retrying transient failures with exponential backoff (tenacity)."""
        import requests
        import tenacity

        def transient(error: BaseException) -> bool:
            return isinstance(error, requests.exceptions.RequestException | OSError) and _is_transient(error)

        def announce(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            delay = state.next_action.sleep if state.next_action else 0.0
            status = _status(error) if error is not None else None
            print(f"Kaggle API: {type(error).__name__} ({status or 'no answer'}); retry in {delay:.0f} s")

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retries + 1),
            wait=tenacity.wait_exponential(multiplier=self.backoff_seconds, exp_base=2, max=float("inf")),
            retry=tenacity.retry_if_exception(transient),
            before_sleep=announce,
            sleep=self._sleep,
            reraise=True,
        )

        def attempt() -> T:
            with http_timeouts(*self.timeouts):
                return fn(self._client())

        try:
            return retrying(attempt)
        except (requests.exceptions.RequestException, OSError) as error:
            self._refuse(error, action, competition, kernel)
            attempts = retrying.statistics.get("attempt_number", 1)
            hung = isinstance(error, requests.exceptions.Timeout)
            waited = f" (no answer within {self.timeouts[1]:.0f} s per read)" if hung else ""
            raise KaggleNetworkError(
                f"could not {action} at {endpoint()} after {attempts} attempt(s){waited}: "
                f"{type(error).__name__}: {str(error)[:300]}. Check the connection (and a proxy, "
                "if any) and run the same command again; completed work is kept."
            ) from error

    @staticmethod
    def _refuse(error: Exception, action: str, competition: str, kernel: str) -> None:
        """The errors a retry cannot mend, each in one sentence: rejected credentials (401), a
        kernel not visible (403/404), rules not accepted (403), no such competition (404)."""
        status = _status(error)
        if status == 401:
            raise CredentialsRejectedError(
                f"Kaggle rejected the credentials (401) while trying to {action}. "
                f"Create a new API token at {TOKEN_PAGE} and replace the old one."
            ) from error
        if status in (403, 404) and kernel:
            raise KernelError(
                f"Kaggle answered {status} while trying to {action}: no kernel {kernel} is visible to "
                "this account. Check the username in the id, or push it first (make kernel-push)."
            ) from error
        if status == 403:
            raise RulesNotAcceptedError(
                f"Kaggle refused to {action} (403): accept the competition's rules at "
                f"https://www.kaggle.com/competitions/{competition}/rules while signed in, then run again."
            ) from error
        if status == 404:
            raise CompetitionNotFoundError(
                f"Kaggle knows no competition {competition!r} (404) while trying to {action}: "
                "check the slug in the address https://www.kaggle.com/competitions/<slug>."
            ) from error

    def download_competition_archive(self, competition: str, folder: Path) -> Path:
        """Download the competition's archive into `folder` (resuming a partial one); return its path."""
        folder.mkdir(parents=True, exist_ok=True)
        self._call(
            f"download competition {competition}",
            competition,
            lambda api: api.competition_download_files(
                competition, path=str(folder), force=False, quiet=not sys.stdout.isatty()
            ),
        )
        return folder / f"{competition}.zip"

    def submit(self, competition: str, path: Path, message: str) -> int:
        """Upload a submission file (StartSubmissionUpload, PUT, CreateSubmission); return its reference."""
        from kaggle.api.kaggle_api_extended import KaggleApi

        response = self._call(
            f"submit to {competition}",
            competition,
            lambda api: api.competition_submit(str(path), message, competition, quiet=True),
        )
        text = getattr(response, "message", "") or ""
        ref = getattr(response, "ref", 0) or 0
        if text == upload_failed_message(KaggleApi) or not ref:
            raise SubmissionUploadError(
                f"Kaggle did not accept {path.name} ({text or 'no submission reference returned'}); "
                "the file is kept: run `make submit` again later."
            )
        return int(ref)

    def submissions(self, competition: str) -> list[dict[str, Any]]:
        """Every submission of the signed-in user to `competition`, newest first, as plain dicts."""
        found = self._call(
            f"list submissions of {competition}",
            competition,
            lambda api: api.competition_submissions(competition),
        )
        return [
            {
                "ref": s.ref,
                "date": s.date,
                "file": s.file_name,
                "description": s.description,
                "status": getattr(s.status, "name", str(s.status)).lower(),
                "public_score": _number(s.public_score),
                "private_score": _number(s.private_score),
                "error": s.error_description,
                "team": s.team_name,
            }
            for s in (found or [])
        ]

    def leaderboard(self, competition: str) -> list[dict[str, Any]]:
        """The first page of the public leaderboard: team name and score, best first."""
        rows = self._call(
            f"read the leaderboard of {competition}",
            competition,
            lambda api: api.competition_leaderboard_view(competition, page_size=200),
        )
        return [{"team": r.team_name, "score": _number(r.score)} for r in (rows or [])]

    def username(self) -> str:
        """The signed-in user's name (kernel ids are <username>/<slug>)."""
        api = self._client()
        name = api.get_config_value(api.CONFIG_NAME_USER) or os.environ.get("KAGGLE_USERNAME")
        if not name:
            raise CredentialsMissingError(
                "the Kaggle username is unknown (an API token alone does not say it): export KAGGLE_USERNAME."
            )
        return str(name)

    def push_kernel(self, folder: Path, kernel: str) -> tuple[str, int]:
        """Push the bundle in `folder` (SaveKernel) and start a run; return its URL and version number.

        SaveKernel reports refusals in the response (`error`, invalid sources) without raising: each
        of them is a failure here, with Kaggle's words.
        """
        try:
            response = self._call(
                f"push kernel {kernel}", "", lambda api: api.kernels_push(str(folder)), kernel=kernel
            )
        except ValueError as error:  # the client's own checks of the metadata
            raise KernelError(f"the kernel in {folder} was not pushed: {error}") from error
        problems = [str(response.error)] if getattr(response, "error", None) else []
        for label in ("dataset", "competition", "kernel", "model"):
            invalid = list(getattr(response, f"invalid_{label}_sources", None) or [])
            if invalid:
                problems.append(f"invalid {label} sources: {', '.join(invalid)}")
        if list(getattr(response, "invalid_tags", None) or []):
            problems.append(f"invalid tags: {', '.join(response.invalid_tags)}")
        if problems:
            raise KernelError(f"Kaggle refused kernel {kernel}: {'; '.join(problems)}")
        return str(response.url), int(response.version_number or 0)

    def kernel_status(self, kernel: str, version: int | None) -> tuple[str, str]:
        """(status, failure message) of a kernel's version: QUEUED, RUNNING, COMPLETE, ERROR, ..."""
        ref = f"{kernel}/{version}" if version else kernel
        response = self._call(
            f"read the status of kernel {ref}", "", lambda api: api.kernels_status(ref), kernel=ref
        )
        status = getattr(response.status, "name", str(response.status))
        return status, str(getattr(response, "failure_message", "") or "")

    def dataset_status(self, dataset: str) -> str | None:
        """A dataset's processing status ("ready", "pending", ...), or None when no such dataset is
        visible to this account."""
        import requests

        def status(api: Any) -> str | None:
            try:
                return str(api.dataset_status(dataset))
            except requests.exceptions.HTTPError as error:
                if _status(error) in (403, 404):
                    return None
                raise

        return self._call(f"read the status of dataset {dataset}", "", status)

    def publish_dataset(self, folder: Path, dataset: str, notes: str) -> None:
        """Upload the files in `folder` (with its dataset-metadata.json) as a new private dataset,
        or as a new version of `dataset` when it exists."""
        exists = self.dataset_status(dataset) is not None
        action = f"upload dataset {dataset}"
        try:
            if exists:
                response = self._call(
                    action, "", lambda api: api.dataset_create_version(str(folder), notes, quiet=True)
                )
            else:
                response = self._call(
                    action, "", lambda api: api.dataset_create_new(str(folder), public=False, quiet=True)
                )
        except ValueError as error:  # the client's own checks of the metadata, or a failed upload
            raise KaggleError(f"dataset {dataset} was not uploaded from {folder}: {error}") from error
        if getattr(response, "error", None):
            raise KaggleError(f"Kaggle refused dataset {dataset}: {response.error}")

    def kernel_output(self, kernel: str, version: int | None, target: Path) -> list[Path]:
        """Download every output file of a kernel's version (and its log) into `target`."""
        ref = f"{kernel}/{version}" if version else kernel
        target.mkdir(parents=True, exist_ok=True)
        try:
            files, _ = self._call(
                f"download the outputs of kernel {ref}",
                "",
                lambda api: api.kernels_output(ref, str(target), force=True, quiet=True),
                kernel=ref,
            )
        except ValueError as error:  # e.g. an output name that would land outside `target`
            raise KernelError(f"the outputs of kernel {ref} were not downloaded: {error}") from error
        return [Path(f) for f in files]


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None
