"""Paths and keys that a script run by Studio uses to find its artifacts.

The Studio daemon sets three environment variables for every experiment:

``STUDIOML_EXPERIMENT``
    The experiment key.
``STUDIOML_HOME``
    Studio's home directory. Unset means ``~/.studioml``.
``STUDIOML_ARTIFACT_MAPPING``
    Path of a JSON file that maps each artifact tag to the absolute local path
    of that artifact, for example ``{"modeldir": "/data/exp1/modeldir"}``.

Outside Studio, none of these is set. The functions then still return usable
paths: the key is generated once per process, and each artifact ``TAG`` falls
back to the directory ``<home>/experiments/<key>/TAG``. A script can therefore
be tested with plain ``python train.py`` and later run with ``studio run``
without changes. The function names and argument order match the original
StudioML client, so old scripts keep working.
"""

import json
import logging
import os
import threading
import time
import uuid

__all__ = [
    "get_artifact",
    "get_artifact_cache",
    "get_artifacts",
    "get_blob_cache",
    "get_experiment_key",
    "get_model_directory",
    "get_queue_directory",
    "get_studio_home",
    "get_tensorboard_dir",
]

EXPERIMENT_KEY_VARIABLE = "STUDIOML_EXPERIMENT"
HOME_VARIABLE = "STUDIOML_HOME"
ARTIFACT_MAPPING_VARIABLE = "STUDIOML_ARTIFACT_MAPPING"

MODEL_DIRECTORY_TAG = "modeldir"
TENSORBOARD_TAG = "tb"

logger = logging.getLogger(__name__)

# Serializes key generation, so that threads racing on the first call agree.
_experiment_key_lock = threading.Lock()


def get_experiment_key():
    """Return the key of the running experiment.

    Outside Studio, generate a key of the form ``<unix time>_<8 hex digits>``
    and store it in ``os.environ``, so that later calls and child processes
    use the same key.
    """
    with _experiment_key_lock:
        key = os.environ.get(EXPERIMENT_KEY_VARIABLE)
        if not key:
            key = "{}_{}".format(int(time.time()), uuid.uuid4().hex[:8])
            os.environ[EXPERIMENT_KEY_VARIABLE] = key
        return key


def get_studio_home():
    """Return Studio's home directory, creating it if it is missing.

    The home is ``$STUDIOML_HOME`` when that is set and not empty, otherwise
    ``~/.studioml``.
    """
    home = os.environ.get(HOME_VARIABLE)
    if not home:
        home = os.path.join(os.path.expanduser("~"), ".studioml")
    os.makedirs(home, exist_ok=True)
    return home


def get_artifacts():
    """Return a dict that maps each artifact tag to its local path.

    The entries come from the artifact mapping file. Fallback directories
    ``<home>/experiments/<key>/<tag>`` that exist are added for tags that the
    mapping lacks, so ``get_artifacts()[tag] == get_artifact(tag)`` for every
    listed tag. Outside Studio there is no mapping, so the result contains only
    those existing directories, and is ``{}`` when there are none.
    """
    artifacts = {}
    experiment_directory = os.path.join(
        get_studio_home(), "experiments", get_experiment_key()
    )
    if os.path.isdir(experiment_directory):
        for entry in sorted(os.listdir(experiment_directory)):
            path = os.path.join(experiment_directory, entry)
            if os.path.isdir(path):
                artifacts[entry] = path

    artifacts.update(_read_artifact_mapping())
    return artifacts


def get_artifact(tag):
    """Return the local path of the artifact ``tag``.

    The path comes from the artifact mapping file. When there is no mapping
    (outside Studio, or the file is missing or invalid) or the mapping lacks
    the tag, the path is ``<home>/experiments/<key>/<tag>``, created as a
    directory if it does not exist. A missing or invalid mapping file is
    logged and never raises.

    Raises:
        TypeError: ``tag`` is not a string.
        ValueError: ``tag`` is empty or is not a single path component.
    """
    _validate_path_component(tag, "artifact tag")

    mapped_path = _read_artifact_mapping().get(tag)
    if mapped_path is not None:
        return mapped_path

    return _make_directory(
        os.path.join(get_studio_home(), "experiments", get_experiment_key(), tag)
    )


def get_model_directory(experiment_name=None):
    """Return the directory for model checkpoints: the artifact ``modeldir``.

    With ``experiment_name``, return ``<home>/experiments/<name>/modeldir``
    of that experiment instead, created if it does not exist.
    """
    return _get_named_artifact(MODEL_DIRECTORY_TAG, experiment_name)


def get_tensorboard_dir(experiment_name=None):
    """Return the TensorBoard log directory: the artifact ``tb``.

    With ``experiment_name``, return ``<home>/experiments/<name>/tb`` of that
    experiment instead, created if it does not exist.
    """
    return _get_named_artifact(TENSORBOARD_TAG, experiment_name)


def get_artifact_cache(tag, experiment_name=None):
    """Return the cache path ``<home>/experiments/<key>/<tag>`` of an artifact.

    The key is ``experiment_name`` when given, otherwise the running
    experiment's key. The path is not created, because the caller decides
    whether it becomes a file or a directory.
    """
    _validate_path_component(tag, "artifact tag")
    if experiment_name is None:
        experiment_name = get_experiment_key()
    else:
        _validate_path_component(experiment_name, "experiment name")
    return os.path.join(get_studio_home(), "experiments", experiment_name, tag)


def get_blob_cache(blob_key):
    """Return the cache path ``<home>/blobcache/<blob_key>`` of a blob.

    The path is not created. Raises ValueError when ``blob_key`` is empty or
    is not a single path component, and TypeError when it is not a string.
    """
    _validate_path_component(blob_key, "blob key")
    return os.path.join(get_studio_home(), "blobcache", blob_key)


def get_queue_directory():
    """Return the local queue directory ``<home>/queue``, creating it if missing."""
    return _make_directory(os.path.join(get_studio_home(), "queue"))


def _get_named_artifact(tag, experiment_name):
    if experiment_name is None:
        return get_artifact(tag)
    _validate_path_component(experiment_name, "experiment name")
    return _make_directory(
        os.path.join(get_studio_home(), "experiments", experiment_name, tag)
    )


def _read_artifact_mapping():
    """Read the tag-to-path mapping named by ``$STUDIOML_ARTIFACT_MAPPING``.

    Returns ``{}`` when the variable is unset or the file cannot be used. A
    file that is missing, unreadable or not a JSON object is logged as a
    warning, and entries whose value is not a string are skipped with a
    warning.
    """
    mapping_path = os.environ.get(ARTIFACT_MAPPING_VARIABLE)
    if not mapping_path:
        return {}

    try:
        with open(mapping_path, encoding="utf-8") as mapping_file:
            mapping = json.load(mapping_file)
    except FileNotFoundError:
        logger.warning(
            "Artifact mapping file %s not found, so the default artifact "
            "directories under the Studio home are used",
            mapping_path,
        )
        return {}
    except (OSError, ValueError) as error:
        logger.warning(
            "Failed to read the artifact mapping file %s (%s), so the "
            "default artifact directories under the Studio home are used",
            mapping_path,
            error,
        )
        return {}

    if not isinstance(mapping, dict):
        logger.warning(
            "Ignoring artifact mapping file %s because it contains a JSON %s "
            "instead of an object of tag to path",
            mapping_path,
            type(mapping).__name__,
        )
        return {}

    artifacts = {}
    for tag, path in mapping.items():
        if isinstance(path, str):
            artifacts[tag] = path
        else:
            logger.warning(
                "Ignoring the entry for tag %r in artifact mapping file %s "
                "because its value %r is not a path string",
                tag,
                mapping_path,
                path,
            )
    return artifacts


def _validate_path_component(value, description):
    """Raise TypeError or ValueError unless ``value`` is usable as one file name.

    This keeps a tag or key from escaping ``<home>/experiments``.
    """
    if not isinstance(value, str):
        raise TypeError(
            "{} must be a string, got {}".format(description, type(value).__name__)
        )
    invalid = (
        value in ("", ".", "..")
        or "/" in value
        or (os.sep != "/" and os.sep in value)
        or (os.altsep is not None and os.altsep in value)
        or "\0" in value
    )
    if invalid:
        raise ValueError(
            "invalid {} {!r}: expected a non-empty name without path "
            "separators".format(description, value)
        )


def _make_directory(path):
    os.makedirs(path, exist_ok=True)
    return path
