import json
import logging
import os
import re
import threading

import pytest

from studio import fs_tracker


@pytest.fixture
def home(monkeypatch, tmp_path):
    """Isolate the test from the real environment: no Studio variables, HOME in tmp."""
    for variable in (
        fs_tracker.EXPERIMENT_KEY_VARIABLE,
        fs_tracker.HOME_VARIABLE,
        fs_tracker.ARTIFACT_MAPPING_VARIABLE,
    ):
        monkeypatch.delenv(variable, raising=False)
    user_home = tmp_path / "user"
    user_home.mkdir()
    monkeypatch.setenv("HOME", str(user_home))
    return user_home


@pytest.fixture
def studio_run(home, monkeypatch, tmp_path):
    """Set the variables as the daemon does, with a mapping file for two tags."""
    studio_home = tmp_path / "studio-home"
    artifacts = tmp_path / "artifacts"
    mapping = {
        "modeldir": str(artifacts / "modeldir"),
        "data": str(artifacts / "data"),
    }
    mapping_path = tmp_path / "artifacts.json"
    mapping_path.write_text(json.dumps(mapping))
    monkeypatch.setenv(fs_tracker.EXPERIMENT_KEY_VARIABLE, "exp-123")
    monkeypatch.setenv(fs_tracker.HOME_VARIABLE, str(studio_home))
    monkeypatch.setenv(fs_tracker.ARTIFACT_MAPPING_VARIABLE, str(mapping_path))
    return {"home": studio_home, "mapping": mapping, "mapping_path": mapping_path}


# Outside Studio


def test_key_generated_outside_studio(home):
    key = fs_tracker.get_experiment_key()

    assert re.fullmatch(r"\d+_[0-9a-f]{8}", key)
    assert os.environ[fs_tracker.EXPERIMENT_KEY_VARIABLE] == key
    assert fs_tracker.get_experiment_key() == key


def test_key_generated_once_across_threads(home):
    keys = []
    threads = [
        threading.Thread(target=lambda: keys.append(fs_tracker.get_experiment_key()))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(keys) == 8
    assert len(set(keys)) == 1


def test_home_defaults_to_dot_studioml(home):
    studio_home = fs_tracker.get_studio_home()

    assert studio_home == str(home / ".studioml")
    assert os.path.isdir(studio_home)


def test_artifact_falls_back_to_home(home):
    key = fs_tracker.get_experiment_key()

    path = fs_tracker.get_artifact("output")

    assert path == str(home / ".studioml" / "experiments" / key / "output")
    assert os.path.isdir(path)


def test_artifacts_empty_outside_studio(home):
    assert fs_tracker.get_artifacts() == {}


def test_artifacts_list_existing_defaults(home):
    model_directory = fs_tracker.get_model_directory()
    tensorboard_directory = fs_tracker.get_tensorboard_dir()

    assert fs_tracker.get_artifacts() == {
        "modeldir": model_directory,
        "tb": tensorboard_directory,
    }


def test_model_directory_by_name(home):
    path = fs_tracker.get_model_directory("testExperiment")

    assert path == str(home / ".studioml" / "experiments" / "testExperiment" / "modeldir")
    assert os.path.isdir(path)


def test_model_directory_by_key_variable(home, monkeypatch):
    monkeypatch.setenv(fs_tracker.EXPERIMENT_KEY_VARIABLE, "testExperiment")

    path = fs_tracker.get_model_directory()

    assert path == str(home / ".studioml" / "experiments" / "testExperiment" / "modeldir")
    assert os.path.isdir(path)


def test_tensorboard_dir_by_name(home):
    path = fs_tracker.get_tensorboard_dir("other")

    assert path == str(home / ".studioml" / "experiments" / "other" / "tb")
    assert os.path.isdir(path)


def test_queue_directory_created(home):
    path = fs_tracker.get_queue_directory()

    assert path == str(home / ".studioml" / "queue")
    assert os.path.isdir(path)


def test_caches_are_paths_only(home):
    key = fs_tracker.get_experiment_key()
    experiments = home / ".studioml" / "experiments"

    artifact_cache = fs_tracker.get_artifact_cache("weights")
    named_cache = fs_tracker.get_artifact_cache("weights", "other")
    blob_cache = fs_tracker.get_blob_cache("abc123")

    assert artifact_cache == str(experiments / key / "weights")
    assert named_cache == str(experiments / "other" / "weights")
    assert blob_cache == str(home / ".studioml" / "blobcache" / "abc123")
    assert not os.path.exists(artifact_cache)
    assert not os.path.exists(named_cache)
    assert not os.path.exists(blob_cache)


@pytest.mark.parametrize("tag", ["", ".", "..", "a/b", "../escape", "nul\0byte"])
def test_invalid_tag_rejected(home, tag):
    with pytest.raises(ValueError, match="invalid artifact tag"):
        fs_tracker.get_artifact(tag)
    with pytest.raises(ValueError, match="invalid artifact tag"):
        fs_tracker.get_artifact_cache(tag)


def test_invalid_names_rejected(home):
    with pytest.raises(TypeError, match="artifact tag must be a string"):
        fs_tracker.get_artifact(5)
    with pytest.raises(ValueError, match="invalid experiment name"):
        fs_tracker.get_model_directory("../other")
    with pytest.raises(ValueError, match="invalid blob key"):
        fs_tracker.get_blob_cache("a/../../b")


# Inside Studio


def test_key_and_home_from_environment(studio_run):
    assert fs_tracker.get_experiment_key() == "exp-123"
    assert fs_tracker.get_studio_home() == str(studio_run["home"])
    assert os.path.isdir(studio_run["home"])


def test_artifact_from_mapping(studio_run):
    assert fs_tracker.get_artifact("data") == studio_run["mapping"]["data"]
    assert fs_tracker.get_model_directory() == studio_run["mapping"]["modeldir"]


def test_artifact_missing_from_mapping(studio_run):
    path = fs_tracker.get_artifact("tb")

    assert path == str(studio_run["home"] / "experiments" / "exp-123" / "tb")
    assert os.path.isdir(path)
    assert fs_tracker.get_tensorboard_dir() == path


def test_artifacts_merge_mapping_and_defaults(studio_run):
    tensorboard_directory = fs_tracker.get_tensorboard_dir()

    artifacts = fs_tracker.get_artifacts()

    assert artifacts == dict(studio_run["mapping"], tb=tensorboard_directory)


def test_mapping_wins_over_default_directory(studio_run):
    default_model_directory = studio_run["home"] / "experiments" / "exp-123" / "modeldir"
    default_model_directory.mkdir(parents=True)

    assert fs_tracker.get_artifacts()["modeldir"] == studio_run["mapping"]["modeldir"]


def test_missing_mapping_file_falls_back(studio_run, caplog):
    studio_run["mapping_path"].unlink()

    with caplog.at_level(logging.WARNING, logger="studio.fs_tracker"):
        path = fs_tracker.get_artifact("data")

    assert path == str(studio_run["home"] / "experiments" / "exp-123" / "data")
    assert os.path.isdir(path)
    assert "not found" in caplog.text
    assert fs_tracker.get_artifacts() == {"data": path}


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "Failed to read"),
        ("[1, 2]", "instead of an object"),
    ],
)
def test_invalid_mapping_file_falls_back(studio_run, caplog, content, message):
    studio_run["mapping_path"].write_text(content)

    with caplog.at_level(logging.WARNING, logger="studio.fs_tracker"):
        path = fs_tracker.get_artifact("data")

    assert path == str(studio_run["home"] / "experiments" / "exp-123" / "data")
    assert message in caplog.text


def test_mapping_entry_not_string_skipped(studio_run, caplog):
    studio_run["mapping_path"].write_text(json.dumps({"data": 7, "modeldir": "/m"}))

    with caplog.at_level(logging.WARNING, logger="studio.fs_tracker"):
        artifacts = fs_tracker.get_artifacts()

    assert artifacts == {"modeldir": "/m"}
    assert "'data'" in caplog.text
