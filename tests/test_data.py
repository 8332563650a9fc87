"""Reading image folders and datasets, and caching their encodings."""

import json

import pytest
import torch
from conftest import write_image_folder
from diffusers import StableDiffusionPipeline

from pipelines.data_sources import load_dataset_images, read_image_folder
from pipelines.errors import InputError
from pipelines.latent_cache import EncodedImageSet
from pipelines.model_family import SD, TextConditioner
from pipelines.randomness import SampleStream


def test_image_folder_reads_files_and_captions(tmp_path):
    folder = write_image_folder(tmp_path / "imgs", ["a cat", "a dog"])
    images = read_image_folder(folder, "--forget_data_dir")
    assert images.captions == ["a cat", "a dog"] and len(images) == 2
    assert "imgs" in images.sources[0]


def test_image_folder_without_metadata_is_refused(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match=r"--remain_data_dir: .*plain has no metadata.jsonl"):
        read_image_folder(str(tmp_path / "plain"), "--remain_data_dir")


def test_missing_caption_column_names_the_line_and_the_flag(tmp_path):
    folder = write_image_folder(tmp_path / "imgs", ["a cat"])
    with pytest.raises(InputError, match=r"line 1 lacks .*'caption'.*--caption_column"):
        read_image_folder(folder, "--forget_data_dir", caption_column="caption")


def test_empty_folder_listing_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metadata.jsonl").write_text("")
    with pytest.raises(InputError, match="lists no images"):
        read_image_folder(str(tmp_path / "empty"), "--forget_data_dir")


def test_corrupt_image_is_named(tmp_path):
    folder = write_image_folder(tmp_path / "imgs", ["a cat", "a dog"])
    (tmp_path / "imgs" / "img1.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"cannot read image .*img1.png"):
        read_image_folder(folder, "--forget_data_dir")


def test_dataset_needs_the_named_columns(tmp_path):
    from datasets import Dataset

    Dataset.from_dict({"image": ["x.png"], "caption": ["a cat"]}).save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(InputError, match=r"no column 'text'.*--caption_column"):
        load_dataset_images(str(tmp_path / "ds"), "--forget_dataset_name", "image", "text")


def test_parquet_folder_loads_as_a_dataset(tmp_path):
    from datasets import Dataset
    from datasets import Image as ImageFeature

    folder = write_image_folder(tmp_path / "imgs", ["a cat", "a dog"])
    rows = [json.loads(line) for line in open(tmp_path / "imgs" / "metadata.jsonl")]
    data = Dataset.from_dict(
        {"image": [str(tmp_path / "imgs" / r["file_name"]) for r in rows], "text": [r["text"] for r in rows]}
    )
    (tmp_path / "pq").mkdir()
    data.cast_column("image", ImageFeature()).to_parquet(str(tmp_path / "pq" / "train.parquet"))
    loaded = load_dataset_images(str(tmp_path / "pq"), "--remain_dataset_name", "image", "text")
    assert loaded.captions == ["a cat", "a dog"]
    assert folder


@pytest.fixture(scope="module")
def parts(tiny_model):
    pipeline = StableDiffusionPipeline.from_pretrained(tiny_model)
    return pipeline.vae, TextConditioner(SD, [pipeline.tokenizer], [pipeline.text_encoder])


def test_latents_of_deterministic_images_are_cached_and_match_fresh_encoding(parts, tmp_path):
    vae, conditioner = parts
    images = read_image_folder(write_image_folder(tmp_path / "imgs", ["a cat", "a cat", "a dog"]), "--forget_data_dir")
    encoded = EncodedImageSet(
        images,
        vae,
        conditioner,
        resolution=16,
        center_crop=False,
        random_flip=False,
        device=torch.device("cpu"),
    )
    assert not encoded.augmented and len(encoded.latent_mean) == 3
    assert encoded.prompt_embeds.hidden.shape[0] == 2  # one embedding per distinct caption
    draws = SampleStream(0, 1, 3).draw([0, 1, 2], encoded.latent_shape, 1000)
    latents, embeds, time_ids = encoded.batch(draws, torch.device("cpu"))
    assert latents.shape == (3, 4, 8, 8) and embeds.hidden.shape[0] == 3 and time_ids is None

    # The cached distribution sampled with the draw's noise equals encoding the image now.
    item = draws.item_indices[0]
    from pipelines.data_sources import load_image
    from pipelines.latent_cache import crop_and_flip, resize_shorter_side

    pixels = crop_and_flip(resize_shorter_side(load_image(images.images[item]), 16), 16, 0.5, 0.5, False)
    with torch.no_grad():
        distribution = vae.encode(pixels[None]).latent_dist
    fresh = (distribution.mean + distribution.std * draws.latent_noise[0]) * vae.config.scaling_factor
    torch.testing.assert_close(latents[0], fresh[0], atol=1e-5, rtol=1e-4)


def test_dropped_captions_condition_on_the_empty_prompt(parts, tmp_path):
    vae, conditioner = parts
    images = read_image_folder(write_image_folder(tmp_path / "imgs", ["a cat", "a dog"]), "--remain_data_dir")
    encoded = EncodedImageSet(
        images, vae, conditioner, 16, False, False, torch.device("cpu"), empty_prompt_probability=0.5
    )
    draws = SampleStream(0, 2, 2).draw(list(range(40)), encoded.latent_shape, 1000, None, 0.5)
    _, embeds, _ = encoded.batch(draws, torch.device("cpu"))
    empty, cat, dog = conditioner.encode(["", "a cat", "a dog"], torch.device("cpu")).hidden
    assert 0 < int(draws.empty_prompt.sum()) < 40
    for k, item in enumerate(draws.item_indices):
        expected = empty if draws.empty_prompt[k] else (cat if images.captions[item] == "a cat" else dog)
        torch.testing.assert_close(embeds.hidden[k], expected)


def test_random_augmentation_encodes_per_step(parts, tmp_path):
    vae, conditioner = parts
    images = read_image_folder(
        write_image_folder(tmp_path / "imgs", ["a cat", "a dog"], size=(24, 16)), "--forget_data_dir"
    )
    cropped = EncodedImageSet(
        images, vae, conditioner, 16, center_crop=False, random_flip=False, device=torch.device("cpu")
    )
    centred = EncodedImageSet(
        images, vae, conditioner, 16, center_crop=True, random_flip=False, device=torch.device("cpu")
    )
    assert len(cropped.augmented) == 2 and not centred.augmented
    draws = SampleStream(0, 1, 2).draw([0, 1, 2, 3], cropped.latent_shape, 1000)
    latents, _, _ = cropped.batch(draws, torch.device("cpu"))
    assert latents.shape == (4, 4, 8, 8)
