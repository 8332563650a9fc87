"""Every image mode read as it means, and bad input answered with one line that names the argument or file."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, tiny_run_args, write_image_folder
from PIL import Image

from pipelines.data_sources import load_image, read_image_folder, to_rgb
from pipelines.errors import InputError
from pipelines.prompts import expand_prompt_arguments
from train_erasediff import main, parse_args


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(to_rgb(image))


# Image modes ---------------------------------------------------------------------------------------------


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    path = tmp_path / "sixteen.png"
    Image.fromarray(values).save(path)  # PIL reads 16-bit grayscale PNG back as I;16 or I
    with Image.open(path) as opened:
        assert opened.mode in ("I;16", "I")
    np.testing.assert_array_equal(np.asarray(load_image(str(path)))[0, :, 0], [0, 1, 128, 255])
    for mode, dtype in (("I;16", "<u2"), ("I;16B", ">u2")):
        image = Image.frombytes(mode, (4, 1), values.astype(dtype).tobytes())
        np.testing.assert_array_equal(pixels(image)[0, :, 0], [0, 1, 128, 255])
    wide = Image.fromarray(values.astype(np.int32), mode="I")  # how some PIL versions open 16-bit PNGs
    np.testing.assert_array_equal(pixels(wide)[0, :, 0], [0, 1, 128, 255])


def test_thirty_two_bit_integers_up_to_255_keep_their_values():
    image = Image.fromarray(np.array([[0, 100, 255]], dtype=np.int32), mode="I")
    np.testing.assert_array_equal(pixels(image)[0], [[0, 0, 0], [100, 100, 100], [255, 255, 255]])


def test_float_images_are_read_as_unit_or_byte_range():
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), mode="F")
    np.testing.assert_array_equal(pixels(unit)[0, :, 0], [0, 128, 255])
    byte_range = Image.fromarray(np.array([[0.0, 100.0, 300.0]], dtype=np.float32), mode="F")
    np.testing.assert_array_equal(pixels(byte_range)[0, :, 0], [0, 100, 255])


def test_transparency_is_composited_onto_white():
    rgba = Image.fromarray(np.array([[[255, 0, 0, 255], [255, 0, 0, 0], [0, 0, 255, 128]]], dtype=np.uint8), "RGBA")
    np.testing.assert_array_equal(pixels(rgba)[0], [[255, 0, 0], [255, 255, 255], [127, 127, 255]])
    la = Image.fromarray(np.array([[[0, 0], [0, 255]]], dtype=np.uint8), "LA")
    np.testing.assert_array_equal(pixels(la)[0], [[255, 255, 255], [0, 0, 0]])
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 0
    np.testing.assert_array_equal(pixels(palette)[0], [[255, 255, 255], [0, 255, 0]])


def test_cmyk_palette_and_bilevel_convert_as_pil_does():
    cmyk = Image.new("CMYK", (1, 1), (0, 255, 255, 0))
    np.testing.assert_array_equal(pixels(cmyk)[0, 0], [255, 0, 0])
    palette = Image.new("P", (1, 1))
    palette.putpalette([10, 20, 30] + [0] * 765)
    np.testing.assert_array_equal(pixels(palette)[0, 0], [10, 20, 30])
    np.testing.assert_array_equal(pixels(Image.new("1", (1, 1), 1))[0, 0], [255, 255, 255])


# One line instead of a traceback ---------------------------------------------------------------------


def test_a_prompt_file_that_is_not_utf8_names_the_file_and_the_line(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_bytes("a cat\na dog\nune for\xeat\n".encode("latin-1"))
    with pytest.raises(InputError) as caught:
        expand_prompt_arguments([str(path)], "--forget_prompts")
    assert str(caught.value) == (f"--forget_prompts: {path} line 3 is not UTF-8 (byte 0xea); save the file as UTF-8")


def test_metadata_captions_keep_unicode_line_separators_and_crlf_lines_are_read(tmp_path):
    captions = ["a cat\u2028at night", "a dog\x0cwith a ball", "a bird\x85"]
    folder = write_image_folder(tmp_path / "separators", captions)
    records = [json.dumps({"file_name": f"img{i}.png", "text": c}, ensure_ascii=False) for i, c in enumerate(captions)]
    with open(os.path.join(folder, "metadata.jsonl"), "w", encoding="utf-8", newline="") as handle:
        handle.write("\r\n".join(records) + "\r\n")  # raw U+2028, form feed and NEL inside JSON strings
    assert read_image_folder(folder, "--forget_data_dir").captions == captions


def test_an_image_over_the_decompression_bomb_limit_is_named(tmp_path, monkeypatch):
    folder = write_image_folder(tmp_path / "big", ["a cat"], size=(64, 64))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64 × 64 is then more than twice the limit
    with pytest.raises(InputError, match=r"image .*img0.png is too large to open safely .*4096 pixels"):
        read_image_folder(folder, "--forget_data_dir")


@pytest.mark.parametrize("file_name", ["/etc/hostname", "../outside.png", "link.png"])
def test_metadata_entries_outside_the_folder_are_refused(file_name, tmp_path):
    folder = tmp_path / "images"
    write_image_folder(folder, ["a cat"])
    write_image_folder(tmp_path, ["outside"])
    os.replace(tmp_path / "img0.png", tmp_path / "outside.png")
    os.symlink(tmp_path / "outside.png", folder / "link.png")
    with open(folder / "metadata.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"file_name": file_name, "text": "x"}) + "\n")
    with pytest.raises(InputError, match=rf"line 2: file_name '{file_name}' is not a path inside"):
        read_image_folder(str(folder), "--forget_data_dir")


@pytest.mark.parametrize("flag", ["--learning_rate", "--eta", "--lambda_value", "--forget_noise_mean", "--adam_beta1"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_float_arguments_are_refused_at_parse_time(flag, value, capsys, tmp_path):
    with pytest.raises(SystemExit):
        parse_args(["--concept", "x", "--output_dir", str(tmp_path / "o"), f"{flag}={value}"])
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f"{flag} must be a finite number, got {value}")


def test_a_resolution_the_pipeline_cannot_draw_is_refused_before_models_load(tiny_model, tmp_path):
    # The tiny VAE halves the size, so 20 passes its check, but the SD pipeline needs multiples of 8.
    with pytest.raises(InputError, match=r"--resolution 20 is not a multiple of 8 .*StableDiffusionPipeline needs"):
        main(parse_args(tiny_run_args(tiny_model, tmp_path / "o", "--concept", "x", "--resolution", "20")))
    assert not (tmp_path / "o").exists()


def test_an_optimizer_step_far_larger_than_the_data_is_refused_with_the_numbers(tiny_model, tmp_path):
    argv = tiny_run_args(tiny_model, tmp_path / "o", "--concept", "x", "--gradient_accumulation_steps", "100")
    with pytest.raises(InputError) as caught:
        main(parse_args(argv))
    assert str(caught.value).startswith(
        "one optimizer step takes 400 forget samples (--forget_batch_size 4 × 1 processes × "
        "--gradient_accumulation_steps 100) but the forget set holds 4 images"
    )
    assert not (tmp_path / "o").exists()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    "environment, expected",
    [
        ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set and it is not in the Hub cache"),
        ({"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}, "cannot be reached"),
    ],
)
def test_the_default_model_unreachable_is_one_line_at_once(environment, expected, tmp_path):
    command = [sys.executable, os.path.join(ROOT, "train_erasediff.py"), "--concept", "Van Gogh"]
    process = subprocess.run(
        [*command, "--output_dir", str(tmp_path / "o"), "--cache_dir", str(tmp_path / "cache")],
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=120,
    )
    last_line = process.stderr.strip().splitlines()[-1]
    assert process.returncode == 2
    assert last_line.startswith("error: could not download CompVis/stable-diffusion-v1-4")
    assert expected in last_line and "--pretrained_model_name_or_path also takes a local diffusers folder" in last_line
    assert "Traceback" not in process.stderr and "Retrying" not in process.stderr  # no download retries


def test_a_transparent_colour_and_lab_images_convert_to_what_they_show(tmp_path):
    import io

    for mode, colour, other in (("RGB", (10, 20, 30), (1, 2, 3)), ("L", 7, 1)):
        image = Image.new(mode, (2, 1), colour)
        image.putpixel((1, 0), other)
        buffer = io.BytesIO()
        image.save(buffer, "PNG", transparency=colour)  # a tRNS chunk: that colour is transparent
        buffer.seek(0)
        shown = pixels(Image.open(buffer))[0]
        np.testing.assert_array_equal(shown[0], [255, 255, 255])
        assert tuple(shown[1]) != (255, 255, 255)
    white, red = Image.new("LAB", (1, 1), (255, 128, 128)), Image.new("LAB", (1, 1), (136, 208, 195))
    assert (pixels(white)[0, 0] >= 250).all()
    r, g, b = pixels(red)[0, 0]
    assert r > 200 and g < 60 and b < 60


@pytest.mark.parametrize(
    "line, message",
    [
        ("5", "line 2 is not a JSON object"),
        ('"img0.png a cat"', "line 2 is not a JSON object"),
        ('{"file_name": "img0.png", "text": null}', "line 2: the caption 'text' is null"),
        ('{"file_name": "a\\u0000b.png", "text": "x"}', "line 2: file_name 'a\\x00b.png' is not a path inside"),
        ('{"file_name": 5, "text": "x"}', "line 2: file_name 5 is not a path inside"),
    ],
)
def test_metadata_lines_that_are_not_records_are_named(line, message, tmp_path):
    folder = write_image_folder(tmp_path / "images", ["a cat"])
    with open(os.path.join(folder, "metadata.jsonl"), "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
    with pytest.raises(InputError, match=re.escape(message)):
        read_image_folder(folder, "--forget_data_dir")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--learning_rate=-1"], "--learning_rate must be positive, got -1.0"),
        (["--adam_beta1", "2"], "--adam_beta1 must be in [0, 1), got 2.0"),
        (["--adam_epsilon=-1"], "--adam_epsilon must not be negative, got -1.0"),
        (["--seed=-1"], "--seed must be in [0, 2**32), got -1"),
        (["--seed", "99999999999"], "--seed must be in [0, 2**32), got 99999999999"),
        (["--report_to", "bogus"], "--report_to bogus is not a tracker; choose from tensorboard"),
        (["--forget_prompts", "typo_prompts.txt"], "the prompt file typo_prompts.txt does not exist"),
    ],
)
def test_more_bad_arguments_are_refused_at_parse_time(extra, message, capsys, tmp_path):
    with pytest.raises(SystemExit):
        parse_args(["--concept", "x", "--output_dir", str(tmp_path / "o"), *extra])
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_the_tracker_choices_are_accelerates():
    from accelerate.utils import LoggerType

    from pipelines.options import REPORT_TO_CHOICES

    assert set(REPORT_TO_CHOICES) == {t.value for t in LoggerType} | {"none"}
