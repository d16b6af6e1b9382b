"""`has_markup` (the polyglot check over a whole file) finds what a search of the lower-cased
file finds: the tags after "<" and "javascript:", in any case, at any place."""

import random
import re

import pytest

from screening.validation import has_markup

from ..factories import png_bytes

REFERENCE = re.compile(rb"<(?:script|iframe|!doctype\s+html|\?php\s|svg\s+xmlns)")


def reference(data: bytes) -> bool:
    lowered = data.lower()
    return bool(REFERENCE.search(lowered)) or b"javascript:" in lowered


TOKENS = [b"<script", b"<iframe", b"<!doctype html", b"<!DOCTYPE\t\r\n  HTML", b"<?php ", b"<?PHP\n",
          b"<svg xmlns", b"<SvG \t xMlNs", b"javascript:", b"JavaScript:", b"jAVASCRIPT:",
          # near misses: no match
          b"<scrip", b"< script", b"<!doctypehtml", b"<?php", b"<?phpx", b"<svgxmlns", b"javascript", b"javascrip:",
          b"javascript :", b"<sc\x00ript", b"\x1cscript", b"<\x13cript", b"<\x01doctype html", b"\x1aavascript:"]


def case_mixed(token: bytes, rng: random.Random) -> bytes:
    return bytes(c ^ 0x20 if chr(c).isalpha() and rng.random() < 0.5 else c for c in token)


def test_it_agrees_with_a_search_of_the_lower_cased_file_wherever_a_token_lies():
    rng = random.Random(7)
    noise = bytes(rng.getrandbits(8) for _ in range(20000))  # a "<" every 256 bytes, as in compressed pixels
    found = 0
    for _ in range(1500):
        token = case_mixed(rng.choice(TOKENS), rng)
        size = rng.choice([0, 1, 5, 9, 10, 11, 300, 20000])
        start = rng.randrange(len(noise) - size + 1)
        data = bytearray(noise[start:start + size])
        at = rng.choice([0, len(data), rng.randrange(len(data) + 1)])
        data[at:at] = token
        if rng.random() < 0.2:  # the token cut short by the end of the file
            data = data[:at + rng.randrange(len(token))]
        data = bytes(data)
        assert has_markup(data) is reference(data), (token, at, len(data))
        found += reference(data)
    assert 400 < found < 1100  # both kinds of case were drawn


@pytest.mark.parametrize("token", TOKENS)
def test_each_token_alone_and_in_an_image(token):
    image = png_bytes(size=(300, 200), seed=3)
    for data in (token, image[:500] + token + image[500:], image + token, token.upper() + image):
        assert has_markup(data) is reference(data)
    assert has_markup(image) is False


def test_empty_and_tiny_files():
    for data in (b"", b"<", b":", b"<s", b"t:", b"pt:"):
        assert has_markup(data) is False
