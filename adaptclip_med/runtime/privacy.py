"""Patient data out of what a run shares: pseudonyms, a key file, path and message sanitising, an audit.

Medical archives are often foldered by patient id, name or accession number, so an input *path* is
patient data as much as a DICOM tag is. Two levels:

* always (every run): what is meant to be shared (``index.html``, ``tables/``, the names of files under
  ``figures/`` and ``overlays/``) shows no absolute path, no input file or folder name and no DICOM
  identifier; :func:`relative_path` gives the root-relative paths the local CSVs keep (the one helper
  for that), :func:`scrub` the messages (skip reasons, errors) without paths (the one scrubber),
  :func:`sanitize_command` / :func:`sanitize_settings` the command line and settings a report may show;
  patient group ids are hashed with a key that never leaves the machine (:func:`installation_secret`);
* ``--anonymize``: no output file at all carries them. Images are named by a salted pseudonym
  (:class:`Pseudonymiser`, HMAC-SHA-256 with a secret salt); the key (pseudonym → path, new UID → source
  UID, and the salt, so that a resumed run names images the same) is written only to ``--key-file``,
  which must lie outside the run folder (:func:`check_key_file`, :func:`write_key_file`). DICOM objects
  are de-identified by PS3.15 Annex E (:mod:`adaptclip_med.runtime.deid`). The end-of-run audit
  (:mod:`adaptclip_med.runtime.audit`): ``collect_identifiers``
  lists what must not appear (what the Annex E profile removes or replaces in the inputs' DICOM
  attributes, input file and folder names, absolute paths; never values that :func:`can_identify`
  rejects, such as ``----`` or ``000000000``) and ``find_identifiers`` scans the bytes of every output
  file (gzip, zip/npz members and PNG text chunks decompressed) for them.

Usage::

    from adaptclip_med.runtime.privacy import Pseudonymiser, check_key_file, write_key_file
    check_key_file("/secure/key.json", "reports/run")       # before the run: refuses a key inside it
    pseud = Pseudonymiser.from_key_file("/secure/key.json")  # same salt as before, or a new one
    pseud.key_of("/data/PAT-1/ACC2.dcm#3")                   # -> "img-5c1f...#3"
    write_key_file("/secure/key.json", pseud, "reports/run")
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from adaptclip_med.runtime.errors import DataValidationError

#: Shown instead of a path in a report's command line and settings.
PATH_PLACEHOLDER = "<path>"
#: Options whose values are paths (``evaluate``, ``score``, ``train``): sanitised even without a ``/``.
PATH_OPTIONS: frozenset[str] = frozenset({
    "--root", "--out", "--normal-prompts", "--normals", "--key-file", "--checkpoint", "--pretrained",
    "--weights", "--data", "--cache", "--input", "--output",
})
#: ``$ADAPTCLIP_CACHE_DIR`` values that turn the on-disk caches off.
CACHE_OFF = frozenset({"", "none", "off", "0"})
_MIN_LEN = 4  # shorter strings match random bytes of images too often to be audited
_SUFFIXES = (".nii.gz", ".dcm", ".dicom", ".nii", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".npz",
             ".json", ".csv", ".pth", ".pt", ".safetensors")


class Pseudonymiser:
    """Stable salted pseudonyms: ``img-`` + 12 hex digits of HMAC-SHA-256(salt, value).

    The same salt gives the same pseudonym for the same value (so resumed runs agree); without the salt
    a pseudonym cannot be recomputed from a guessed path or patient id. :attr:`key` maps every pseudonym
    handed out back to its value (written only by :func:`write_key_file`).

    Args:
        salt: secret bytes (a fresh 16-byte random salt when None).
    """

    def __init__(self, salt: bytes | None = None) -> None:
        self.salt = secrets.token_bytes(16) if salt is None else bytes(salt)
        self.key: dict[str, str] = {}

    @classmethod
    def from_key_file(cls, path: str | os.PathLike[str] | None) -> Pseudonymiser:
        """The salt and key of an existing key file, else a fresh salt (also when ``path`` is None).

        Raises:
            DataValidationError: the file exists but is not a key file written by :func:`write_key_file`.
        """
        if path is None or not Path(path).is_file():
            return cls()
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            pseud = cls(bytes.fromhex(data["salt"]))
            pseud.key.update({str(k): str(v) for k, v in data["pseudonyms"].items()})
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            msg = (f"--key-file {path}: not a pseudonym key file ({err}); expected the JSON written by an "
                   "earlier --anonymize run, or a path that does not exist yet")
            raise DataValidationError(msg) from err
        return pseud

    @property
    def salt_id(self) -> str:
        """A fingerprint of the salt that does not reveal it (runs with another salt are not mixed)."""
        return hmac.new(self.salt, b"adaptclip_med salt id", hashlib.sha256).hexdigest()[:16]

    def name(self, value: str, prefix: str = "img") -> str:
        """The pseudonym of ``value`` (an image path, a patient id, a series folder, ...)."""
        digest = hmac.new(self.salt, str(value).encode("utf-8"), hashlib.sha256).hexdigest()[:12]
        pseudonym = f"{prefix}-{digest}"
        self.key[pseudonym] = str(value)
        return pseudonym

    def uid(self, value: str) -> str:
        """The keyed replacement of a DICOM UID: ``2.25.`` + 128 bits of HMAC-SHA-256(salt, uid), kept in the key.

        The same salt maps the same UID to the same new UID (derived objects of one study line up).
        """
        digest = hmac.new(self.salt, f"uid:{value}".encode(), hashlib.sha256).digest()[:16]
        new = f"2.25.{int.from_bytes(digest, 'big')}"
        self.key[new] = str(value)
        return new

    def date_shift_days(self, patient: str) -> int:
        """Whole days by which the dates of ``patient`` (a PatientID) are shifted back: 365 .. 4014."""
        digest = hmac.new(self.salt, f"date shift:{patient}".encode(), hashlib.sha256).digest()
        return 365 + int.from_bytes(digest[:4], "big") % 3650

    def key_of(self, record_key: str) -> str:
        """Pseudonym of an image key; a volume slice ``path#12`` keeps its ``#12`` (not identifying)."""
        path, sep, index = str(record_key).rpartition("#")
        if sep and index.isdigit():
            return f"{self.name(path)}#{index}"
        return self.name(str(record_key))

    def group_of(self, group: str | None) -> str | None:
        """Pseudonym of a patient / volume group id (``None`` and ``""`` stay as they are)."""
        return self.name(group, prefix="grp") if group else group

    def path_of(self, path: str | os.PathLike[str]) -> str:
        """Pseudonym of an input path (resolved first, so every spelling of a file gets one name)."""
        text, sep, index = str(path).rpartition("#")
        if sep and index.isdigit():
            return f"{self.name(str(Path(text).expanduser().resolve()))}#{index}"
        return self.name(str(Path(path).expanduser().resolve()))


#: An absolute path inside a message: ``/a/b`` or ``C:\\a``, not ``PNG/JPEG``.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.<>])(?:[A-Za-z]:)?[\\/][^\s,;:'\"()]+")


def scrub(text: str, path: str | os.PathLike[str] | None = None, *, folders: Iterable[str | os.PathLike[str]] = (),
          pseudonymiser: Pseudonymiser | None = None) -> str:
    """A message (a skip reason, an error) for the outputs: no path, no input file name.

    In this order: every value ``pseudonymiser`` handed out (paths, ids; longest first), and the file name
    of each such path, becomes its pseudonym; ``path`` (as given, resolved, and its file name) becomes
    ``<file>``; each of ``folders`` (as given and resolved) and any other absolute path becomes ``<path>``.
    """
    if pseudonymiser is not None:
        handed = sorted(((v, k) for k, v in pseudonymiser.key.items() if v), key=lambda vk: -len(vk[0]))
        for value, pseudonym in handed:
            text = text.replace(value, pseudonym)
        for value, pseudonym in handed:
            name = Path(value.rpartition("#")[0] if re.search(r"#\d+$", value) else value).name
            if can_identify(name) and name != value:
                text = text.replace(name, pseudonym)
    if path is not None:
        for form in sorted({str(Path(path).expanduser().resolve()), str(path)}, key=len, reverse=True):
            text = text.replace(form, "<file>")
        if Path(path).name:
            text = text.replace(Path(path).name, "<file>")
    spellings = {str(f) for f in folders} | {str(Path(f).expanduser().resolve()) for f in folders}
    for folder in sorted((f for f in spellings if f not in ("", ".")), key=len, reverse=True):
        text = text.replace(folder, PATH_PLACEHOLDER)
    return _ABSOLUTE_PATH.sub(PATH_PLACEHOLDER, text)


def user_cache_dir() -> Path:
    """``$ADAPTCLIP_CACHE_DIR`` (unless it turns caching off: ``none``, ``off``, ``0``, empty), else
    ``$XDG_CACHE_HOME/adaptclip_med``, else ``~/.cache/adaptclip_med``."""
    explicit = os.environ.get("ADAPTCLIP_CACHE_DIR")
    if explicit is not None and explicit.strip().lower() not in CACHE_OFF:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "adaptclip_med"


_SECRETS: dict[str, bytes] = {}


def installation_secret() -> bytes:
    """This installation's secret key (32 random bytes in ``<user cache>/install-secret``, mode 0600).

    Created on first use and never written anywhere else: ids hashed with it (patient groups) agree from
    run to run on this machine but cannot be recomputed elsewhere from a guessed patient id. An unwritable
    cache folder gives a secret for this process only (with a warning).
    """
    path = user_cache_dir() / "install-secret"
    if str(path) in _SECRETS:
        return _SECRETS[str(path)]
    try:
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".install-secret.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(secrets.token_hex(32))
            try:
                os.link(tmp, path)  # atomic, and never replaces a secret another process wrote first
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        secret = bytes.fromhex(path.read_text(encoding="ascii").strip())
        if len(secret) < 16:
            raise ValueError("too short")
    except (OSError, ValueError) as err:
        import warnings

        warnings.warn(f"{path}: cannot keep the installation secret ({err}); patient group ids of this run "
                      "will not match other runs", RuntimeWarning, stacklevel=2)
        secret = secrets.token_bytes(32)
    _SECRETS[str(path)] = secret
    return secret


def is_inside(path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> bool:
    """True when ``path`` (resolved) is ``folder`` or lies below it."""
    p, f = Path(path).expanduser().resolve(), Path(folder).expanduser().resolve()
    return p == f or f in p.parents


def check_key_file(key_file: str | os.PathLike[str] | None, run_dir: str | os.PathLike[str]) -> None:
    """Refuse a key file inside the run folder (the key would be shared with the run).

    Raises:
        DataValidationError: ``key_file`` lies in ``run_dir`` or is an existing folder.
    """
    if key_file is None:
        return
    if is_inside(key_file, run_dir):
        msg = (f"--key-file {key_file}: lies inside the run folder {run_dir}, which is meant to be shared; "
               "the key maps pseudonyms back to patients' files: put it outside, e.g. --key-file "
               "~/secure/run-key.json")
        raise DataValidationError(msg)
    if Path(key_file).is_dir():
        msg = f"--key-file {key_file}: is a folder; expected a file path (e.g. {Path(key_file) / 'key.json'})"
        raise DataValidationError(msg)


def write_key_file(key_file: str | os.PathLike[str], pseudonymiser: Pseudonymiser,
                   run_dir: str | os.PathLike[str]) -> Path:
    """Write ``{"salt", "pseudonyms": {pseudonym: value}}`` to ``key_file``, readable by the owner only.

    Raises:
        DataValidationError: see :func:`check_key_file`.
    """
    check_key_file(key_file, run_dir)
    path = Path(key_file).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"about": "adaptclip_med pseudonym key: keep private; maps the pseudonyms of a run's outputs "
                        "back to the input files", "salt": pseudonymiser.salt.hex(),
               "pseudonyms": dict(sorted(pseudonymiser.key.items()))}
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    return path


def relative_path(path: str | os.PathLike[str], root: str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]],
                  prompt_root: str | os.PathLike[str] | None = None) -> str:
    """A path as the outputs show it: relative to the data folder it lies in, never absolute.

    Args:
        path: a file or folder; ``path#12`` (a volume slice) keeps its ``#12``.
        root: the data set's folder, or ``{label: folder}`` of several (the deepest that holds ``path``).
        prompt_root: the user's normal-prompt folder: paths below it get ``normal-prompts/`` + relative
            (tried after ``root``).

    The path is tried as listed first (a symbolic link, broken or not, keeps its own name), then resolved.
    A path under none of the folders becomes its file name.
    """
    text, sep, index = str(path).rpartition("#")
    suffix = f"#{index}" if sep and index.isdigit() else ""
    source = Path(text if suffix else str(path)).expanduser()
    folders = list(root.values()) if isinstance(root, Mapping) else [root]
    tiers = [[(Path(f).expanduser(), "") for f in folders if f is not None]]
    if prompt_root is not None:
        tiers.append([(Path(prompt_root).expanduser(), "normal-prompts/")])
    for tier in tiers:
        for norm in (Path.absolute, Path.resolve):
            here = norm(source)
            found = [(prefix, here.relative_to(norm(base))) for base, prefix in tier if here.is_relative_to(norm(base))]
            if found:
                prefix, rel = min(found, key=lambda pr: len(pr[1].parts))
                return f"{prefix}{rel.as_posix()}{suffix}"
    return f"{source.name}{suffix}"


def looks_like_path(value: str) -> bool:
    """True for absolute / home / relative paths with a separator, and for names of data or weight files."""
    v = str(value)
    rooted = v.startswith(("/", "~", "./", "../")) or bool(re.match(r"^[A-Za-z]:[\\/]", v))
    if " " in v and not rooted:
        return False  # a sentence ("adaptclip-tiny/random at 224 px"), not a path
    return rooted or "/" in v or "\\" in v or v.lower().endswith(_SUFFIXES)


def _clean_token(token: str, is_path: bool) -> str:
    if token.startswith("--") and "=" in token:  # --out=/x
        opt, value = token.split("=", 1)
        return f"{opt}={_clean_token(value, opt in PATH_OPTIONS)}"
    if "=" in token and not token.startswith("-"):  # LABEL=PATH pairs of --root / --normal-prompts
        label, value = token.split("=", 1)
        if is_path or looks_like_path(value):
            return f"{label}={PATH_PLACEHOLDER}"
        return token
    return PATH_PLACEHOLDER if (is_path or looks_like_path(token)) and not token.startswith("-") else token


def sanitize_command(command: str | Iterable[str], path_options: Iterable[str] = PATH_OPTIONS) -> str:
    """The command line with every path replaced by ``<path>`` (the interpreter shown as ``python``).

    Values of ``path_options`` are paths even without a ``/`` (``--root data``); the positional
    arguments right after ``-m <module>`` (``score INPUT...``) are paths too; registered names such as
    ``--checkpoint adaptclip-mvtec`` are kept.
    """
    tokens = shlex.split(command) if isinstance(command, str) else [str(t) for t in command]
    options = set(path_options)
    out: list[str] = []
    in_path_option = positional = False
    for i, tok in enumerate(tokens):
        if i == 0 and (Path(tok).name.startswith("python") or looks_like_path(tok)):
            out.append("python")
            continue
        if tok.startswith("-"):
            in_path_option = tok in options
            positional = False
            out.append(_clean_token(tok, False))
            continue
        if i >= 2 and tokens[i - 1] == "-m":
            out.append(tok)
            positional = True
            continue
        keep_name = in_path_option and tokens[i - 1] in {"--checkpoint", "--pretrained"} and not looks_like_path(tok)
        out.append(tok if keep_name else _clean_token(tok, in_path_option or positional))
    return " ".join(t if t.endswith(PATH_PLACEHOLDER) else shlex.quote(t) for t in out)


_PATH_KEYS = frozenset({"out", "key_file", "normals", "inputs", "root"})
_TEXT_KEYS = frozenset({"protocol", "title", "notice", "name", "method", "reason"})  # prose, kept as written
_PAIR_KEYS = frozenset({"roots", "normal_prompts"})


def sanitize_settings(obj: Any, key: str = "") -> Any:
    """A copy of a settings tree (dicts, lists, scalars) with every path replaced by ``<path>``.

    ``roots`` / ``normal_prompts`` pairs keep their labels; ``command_line`` goes through
    :func:`sanitize_command`; prose (``protocol``, ``title``, ``notice``, ...) is kept; any other string
    that :func:`looks_like_path` is replaced.
    """
    if isinstance(obj, Mapping):
        return {k: sanitize_settings(v, str(k)) for k, v in obj.items()}
    if key in _PAIR_KEYS and isinstance(obj, list | tuple):
        return [[p[0], PATH_PLACEHOLDER] if isinstance(p, list | tuple) and len(p) == 2 else PATH_PLACEHOLDER
                for p in obj]
    if isinstance(obj, list | tuple):
        return [sanitize_settings(v, key) for v in obj]
    if isinstance(obj, str):
        if key == "command_line":
            return sanitize_command(obj) if obj else obj
        if key in _TEXT_KEYS:
            return obj
        if (key in _PATH_KEYS and obj) or looks_like_path(obj):
            return PATH_PLACEHOLDER
    return obj


def can_identify(value: str) -> bool:
    """False for values that cannot identify anyone, and so are never forbidden: shorter than 4 characters,
    punctuation only (``----``), or one repeated character (``000000000``)."""
    text = str(value).strip()
    return len(text) >= _MIN_LEN and any(ch.isalnum() for ch in text) and len(set(text)) > 1


def read_key_file(key_file: str | os.PathLike[str]) -> dict[str, str]:
    """``{pseudonym: path}`` of a key file written by :func:`write_key_file`.

    Raises:
        DataValidationError: not such a key file.
    """
    return dict(Pseudonymiser.from_key_file(key_file).key) if Path(key_file).is_file() else {}


__all__ = [
    "CACHE_OFF", "PATH_OPTIONS", "PATH_PLACEHOLDER", "Pseudonymiser", "can_identify", "check_key_file",
    "installation_secret", "is_inside", "looks_like_path", "read_key_file", "relative_path", "sanitize_command",
    "sanitize_settings", "scrub", "user_cache_dir", "write_key_file",
]
