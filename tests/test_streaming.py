"""Streaming populations: every dataset kind gives the in-memory path's embeddings, bit for bit."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from dife_core.builtins.datasets import load_csv, load_imagefolder, load_webdataset
from dife_core.engine.embeddings import AppliedTrigger, EmbeddingService
from dife_core.errors import InvalidInputError
from dife_core.populations import ArraySource, LabelledImages, LazyImages

CLASSES = ("cat", "dog", "ship")


@pytest.fixture(scope="module")
def model():
    from dife_openclip.testing import tiny_encoder

    return tiny_encoder("vit", seed=3)


def _png(rng, size=(40, 28)) -> bytes:
    arr = (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)
    b = io.BytesIO()
    Image.fromarray(arr).save(b, "PNG")
    return b.getvalue()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The same 30 images as an ImageFolder, an open_clip CSV and two WebDataset shards."""
    import webdataset as wds

    root = tmp_path_factory.mktemp("stream")
    rng = np.random.default_rng(0)
    rows, samples = [], []
    for i in range(30):
        c = CLASSES[i % 3]
        png = _png(rng)
        (root / "folder" / c).mkdir(parents=True, exist_ok=True)
        (root / "folder" / c / f"{i:03d}.png").write_bytes(png)
        rows.append(f"folder/{c}/{i:03d}.png,a photo of a {c} number {i}")
        samples.append({"__key__": f"{i:03d}", "png": png, "txt": f"a photo of a {c} number {i}",
                        "cls": str(i % 3)})
    (root / "pairs.csv").write_text("filepath,title\n" + "\n".join(rows) + "\n")
    (root / "wds").mkdir()
    for s in range(2):
        with wds.TarWriter(str(root / "wds" / f"shard-{s}.tar")) as w:
            for smp in samples[s * 15:(s + 1) * 15]:
                w.write(smp)
    return root


def _both(load, **kw):
    return load(stream=True, **kw), load(stream=False, **kw)


def _same_features(model, lazy_pop, eager_pop, trigger=None):
    trig = trigger or AppliedTrigger("clean", "none", None)
    a = EmbeddingService(shard=8, batch_size=4, store=None)
    b = EmbeddingService(shard=8, batch_size=4, store=None)
    assert isinstance(lazy_pop.images, LazyImages) and isinstance(eager_pop.images, torch.Tensor)
    fa = a.images(model, lazy_pop.name, lazy_pop.images, trig)
    fb = b.images(model, eager_pop.name, eager_pop.images, trig)
    assert fa.shape[0] == len(lazy_pop) and torch.equal(fa, fb)
    # streamed shard by shard: the whole population was never decoded into memory
    assert getattr(lazy_pop.source, "_materialised", None) is None
    assert [e[4] for e in a.log] == [e[4] for e in b.log] == [8, 8, 8, 6][:len(a.log)]


def _noise_trigger():
    def fn(px, seed=0):  # random placement: the seed per shard must match between the two paths
        g = torch.Generator().manual_seed(seed)
        out = px.clone()
        out[:, :, :4, :4] = torch.rand((px.shape[0], 3, 4, 4), generator=g)
        return out

    return AppliedTrigger("noise-patch", "image", fn)


def test_imagefolder_streams_identical_features(data, model):
    lazy, eager = _both(load_imagefolder, path=data / "folder", image_size=32)
    assert lazy.classification.name == eager.classification.name
    _same_features(model, lazy.classification, eager.classification)
    _same_features(model, lazy.classification, eager.classification, _noise_trigger())


def test_csv_streams_identical_features(data, model):
    lazy, eager = _both(load_csv, path=data / "pairs.csv", image_size=32)
    _same_features(model, lazy.pool, eager.pool)


def test_webdataset_streams_identical_features(data, model):
    lazy, eager = _both(load_webdataset, path=data / "wds", image_size=32, classnames=",".join(CLASSES))
    assert len(lazy.pool) == 30 and lazy.pool.captions[4] == "a photo of a dog number 4"
    assert list(lazy.classification.labels[:4]) == [0, 1, 2, 0]
    _same_features(model, lazy.classification, eager.classification)
    # the same pixels as the ImageFolder holding the same files
    folder = load_imagefolder(data / "folder", image_size=32, stream=False).classification
    order = np.argsort([f"{CLASSES[i % 3]}/{i:03d}" for i in range(30)], kind="stable")
    assert torch.equal(eager.classification.images, folder.images[np.argsort(order)])


def test_in_memory_uint8_and_float_give_the_same_features(data, model):
    px = load_imagefolder(data / "folder", image_size=32, stream=False).classification.images
    u8 = (px * 255).round().to(torch.uint8)
    a = EmbeddingService(shard=8, store=None).images(model, "f", u8.float() / 255)
    b = EmbeddingService(shard=8, store=None).images(model, "u", ArraySource(u8))
    assert torch.equal(a, b)


def test_lazy_images_act_like_the_tensor_and_decode_only_what_is_read(data):
    lazy = load_imagefolder(data / "folder", image_size=32, stream=True).classification
    eager = load_imagefolder(data / "folder", image_size=32, stream=False).classification
    imgs = lazy.images
    assert len(imgs) == 30 and tuple(imgs.shape) == (30, 3, 32, 32) and imgs.dtype == torch.float32
    assert torch.equal(imgs[3:9], eager.images[3:9]) and torch.equal(imgs[-1], eager.images[-1])
    assert getattr(lazy.source, "_materialised", None) is None  # shape and slices decode nothing else
    assert torch.equal(imgs[torch.tensor([0, 5])], eager.images[torch.tensor([0, 5])])
    assert torch.equal(torch.cat([imgs, imgs]), torch.cat([eager.images, eager.images]))
    assert torch.equal(imgs.clone() * 2, eager.images * 2) and float(imgs.mean()) == float(eager.images.mean())
    assert isinstance(LabelledImages("x", imgs, None, ()).images, LazyImages)  # a lazy view stays lazy


def test_a_broken_file_found_while_streaming_is_an_input_error_naming_it(data, tmp_path):
    import shutil

    shutil.copytree(data / "folder", tmp_path / "f")
    bad = tmp_path / "f" / "cat" / "000.png"
    bad.write_bytes(bad.read_bytes()[:60])  # a valid header, truncated pixels: passes the load-time check
    pop = load_imagefolder(tmp_path / "f", image_size=32, stream=True).classification
    with pytest.raises(InvalidInputError, match=r"000\.png cannot be read as an image"):
        EmbeddingService(store=None).images(__import__("dife_openclip.testing", fromlist=["x"]).tiny_encoder(),
                                            pop.name, pop.images)


def test_webdataset_refuses_hostile_shards(tmp_path):
    import webdataset as wds

    with wds.TarWriter(str(tmp_path / "a.tar")) as w:
        w.write({"__key__": "x", "png": b"garbage", "txt": "a cat"})
    with pytest.raises(InvalidInputError, match=r"a\.tar sample 'x'.*cannot be read as an image"):
        load_webdataset(tmp_path / "a.tar", image_size=8)
    with wds.TarWriter(str(tmp_path / "b.tar")) as w:
        w.write({"__key__": "y", "png": _png(np.random.default_rng(1)), "txt": "a" * 5000})
    with pytest.raises(InvalidInputError, match="caption of 5000 characters"):
        load_webdataset(tmp_path / "b.tar", image_size=8)
    with pytest.raises(Exception, match="does not exist"):
        load_webdataset("pipe:echo hi", image_size=8)


def test_world_draws_only_the_splits_read_and_caches_them_on_disk(tmp_path, monkeypatch):
    from dife_shapes import world as W

    monkeypatch.setenv("DIFE_CACHE_DIR", str(tmp_path))
    W.pixels.cache_clear()
    p = W.get_preset("test")
    w = W.make_world(p)
    assert not (tmp_path / "world").exists()  # nothing drawn yet
    x = w.classification.images
    files = sorted(f.name for f in (tmp_path / "world").iterdir())
    assert len(files) == 1 and files[0].startswith("test-")  # only the split read
    # identical to drawing it directly, and the next process loads it from disk
    opts = tuple(p.scene_options().items())
    drawn = W.render.render(W.scenes(p.n_test, 0, "test", 32, opts)[0], 32)
    assert torch.equal(x, torch.from_numpy(drawn).float().div_(255.0))
    W.pixels.cache_clear()
    again = W.make_world(p).classification.images
    assert torch.equal(again, x)
    # a damaged cache file is drawn again, never trusted
    path = tmp_path / "world" / files[0]
    path.write_bytes(path.read_bytes()[:-10])
    W.pixels.cache_clear()
    assert torch.equal(W.make_world(p).classification.images, x)
    W.pixels.cache_clear()


def test_sources_travel_to_another_process(data):
    import pickle

    from dife_shapes import world as W

    for pop in (load_imagefolder(data / "folder", image_size=32, stream=True).classification,
                load_webdataset(data / "wds", image_size=32, stream=True).pool,
                W.make_world("test").classification):
        _ = pop.images[0:2]  # opened: locks, cursors and decoded pixels stay behind
        copy = pickle.loads(pickle.dumps(pop))
        assert torch.equal(copy.images[0:2], pop.images[0:2]) and len(copy) == len(pop)


STREAM_CHILD = """
import resource, sys, torch
torch.set_num_threads(1)
import numpy as np
from dife_core.engine.embeddings import EmbeddingService
from dife_core.populations import ImageSource
from dife_openclip.testing import tiny_encoder

class Synthetic(ImageSource):  # 3,000 images of 224 px: 1.8 GB as float32, 450 MB as uint8
    item_shape = (3, 224, 224)
    def __len__(self): return 3000
    def content_key(self): return "synthetic"
    def read(self, lo, hi):
        return torch.from_numpy(np.random.default_rng(lo).integers(0, 256, (hi - lo, 3, 224, 224), dtype=np.uint8))

model = tiny_encoder("vit", seed=0)
src = Synthetic()
vm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize:"))
cap = (vm + 700 * 1024) * 1024  # 700 MB above what the process holds: a shard, not the population
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
f = EmbeddingService(store=None, shard=256, batch_size=64).images(model, "big", src)
try:
    src.materialise()
    whole = "fits"
except (MemoryError, RuntimeError):
    whole = "does not fit"
print(tuple(f.shape), whole)
"""


def test_streaming_memory_does_not_grow_with_the_population():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", STREAM_CHILD], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "(3000, 32) does not fit"
