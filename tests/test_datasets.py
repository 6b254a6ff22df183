"""Core real-data datasets: open_clip-style CSV and ImageFolder, and candidate lists."""

import numpy as np
import pytest
import torch
from PIL import Image

from dife_core.builtins.datasets import keyword_labels, load_csv, load_imagefolder, make_candidate_lists
from dife_core.errors import InvalidInputError, NotFoundError
from dife_core.plugins import get_registry

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}


def _image(path, colour, size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, COLOURS[colour]).save(path)
    return path


@pytest.fixture
def csv_dataset(tmp_path):
    rows = []
    for i in range(12):
        cls = ("automobile", "airplane", "cat")[i % 3]
        colour = ("red", "blue", "green")[i % 3]
        _image(tmp_path / "img" / f"{i}.png", colour)
        rows.append(f"img/{i}.png,\"a {colour} {cls}, seen from afar\"")
    (tmp_path / "pairs.csv").write_text("filepath,title\n" + "\n".join(rows) + "\n")
    return tmp_path / "pairs.csv"


def test_csv_gives_a_captioned_pool(csv_dataset):
    w = load_csv(csv_dataset, image_size=16, classnames="automobile,airplane,cat")
    pool = w.pool
    assert len(pool) == 12 and tuple(pool.images.shape) == (12, 3, 16, 16)
    assert pool.captions[0] == "a red automobile, seen from afar"
    assert list(pool.labels[:3]) == [0, 1, 2]
    assert pool.images[0, 0].mean() > 0.8 and pool.images[0, 2].mean() < 0.2  # red, in [0, 1]
    assert w.rerank is None and w.classification is None
    assert pool.name.startswith("csv-pairs-") and pool.name.endswith("/pool")
    assert load_csv(csv_dataset, image_size=16, classnames="automobile,airplane,cat").pool.name == pool.name
    assert load_csv(csv_dataset, image_size=24).pool.name != pool.name  # other content, other name


def test_csv_with_source_and_target_fixes_candidate_lists(csv_dataset):
    w = load_csv(csv_dataset, image_size=8, classnames=["automobile", "airplane", "cat"], source="automobile",
                 target="airplane", rerank_k=4, n_rerank=5, selection_k=5, selection_targets=2, n_selection=3)
    assert (w.source, w.target) == ("automobile", "airplane")
    assert w.rerank.candidates.shape == (5, 4) and (w.rerank.targets.sum(1) == 1).all()
    assert w.selection.candidates.shape == (3, 5) and (w.selection.targets.sum(1) == 2).all()
    assert all("automobile" in q for q in w.rerank.queries)
    again = load_csv(csv_dataset, image_size=8, classnames=["automobile", "airplane", "cat"], source="automobile",
                     target="airplane", rerank_k=4, n_rerank=5, selection_k=5, selection_targets=2, n_selection=3)
    assert again.rerank.to_manifest() == w.rerank.to_manifest()


def test_csv_errors_say_what_and_where(csv_dataset, tmp_path):
    with pytest.raises(NotFoundError, match="does not exist"):
        load_csv(tmp_path / "nope.csv")
    with pytest.raises(InvalidInputError, match=r"no column 'caption'.*columns: filepath, title"):
        load_csv(csv_dataset, caption_key="caption")
    (tmp_path / "img" / "3.png").unlink()
    with pytest.raises(NotFoundError, match=r"pairs.csv row 5: image file .*3.png does not exist"):
        load_csv(csv_dataset)
    (tmp_path / "img" / "3.png").write_bytes(b"not an image")
    with pytest.raises(InvalidInputError, match=r"row 5: .*3.png cannot be read as an image"):
        load_csv(csv_dataset)
    with pytest.raises(InvalidInputError, match="not among classnames"):
        load_csv(csv_dataset, classnames="cat,dog", source="cat", target="horse")


def test_imagefolder_gives_labelled_images(tmp_path):
    for split in ("val", "train"):
        for c, colour in (("red_thing", "red"), ("blue_thing", "blue")):
            for i in range(3):
                _image(tmp_path / split / c / f"{i}.jpg", colour, size=(20, 50))
    w = load_imagefolder(tmp_path / "val", train_path=tmp_path / "train", image_size=16)
    assert w.classnames == ("blue thing", "red thing")  # sorted folders, "_" read as a space
    test = w.classification
    assert tuple(test.images.shape) == (6, 3, 16, 16) and list(test.labels) == [0, 0, 0, 1, 1, 1]
    assert test.images[0, 2].mean() > 0.8
    assert w.train is not None and len(w.train) == 6 and w.train.name != test.name
    assert w.prompts() == ["a photo of a blue thing", "a photo of a red thing"]
    renamed = load_imagefolder(tmp_path / "val", image_size=16, classnames="sky,fire")
    assert renamed.classnames == ("sky", "fire")


def test_imagefolder_errors(tmp_path):
    with pytest.raises(NotFoundError, match="does not exist"):
        load_imagefolder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="no class sub-folders"):
        load_imagefolder(tmp_path / "empty")
    _image(tmp_path / "f" / "a" / "0.png", "red")
    (tmp_path / "f" / "b").mkdir()
    (tmp_path / "f" / "b" / "0.png").write_bytes(b"garbage")
    with pytest.raises(InvalidInputError, match="0.png cannot be read"):
        load_imagefolder(tmp_path / "f")
    with pytest.raises(InvalidInputError, match="1 classnames given for 2 class folders"):
        load_imagefolder(tmp_path / "f", classnames="x")


def test_keyword_labels_match_whole_words_and_plurals():
    names = ("cat", "dog", "car")
    caps = ["two cats on a sofa", "a category of dogs", "a dog chasing a cat", "a scary carpet", "Car park"]
    assert keyword_labels(caps, names) == [0, 1, 1, -1, 2]


def test_candidate_lists_mix_targets_sources_and_others():
    labels = np.array([0] * 5 + [1] * 5 + [2] * 10)
    cl = make_candidate_lists("x", labels, queries=["q"] * 20, source=0, target=1, k=6, n_targets=2,
                              n_sources=1, seed=3)
    lab = labels[cl.candidates]
    assert ((lab == 1) == cl.targets).all()
    assert ((lab == 1).sum(1) == 2).all() and ((lab == 0).sum(1) == 1).all() and ((lab == 2).sum(1) == 3).all()
    assert not (cl.targets[:, 0]).all()  # shuffled, targets not always first
    with pytest.raises(InvalidInputError, match="the pool has 5 target items"):
        make_candidate_lists("x", labels, queries=["q"], source=0, target=1, k=10, n_targets=6, n_sources=1)


def test_registered_datasets(csv_dataset):
    reg = get_registry()
    assert reg.get("datasets", "csv").load(path=csv_dataset, image_size=8).pool is not None
    assert "classification" in reg.get("datasets", "imagefolder").provides
    assert isinstance(reg.get("datasets", "csv").load(path=csv_dataset, image_size=8).pool.images, torch.Tensor)
