"""A compressed trace's file is closed with its decompressing reader (gzip.GzipFile closes only files it opened;
zstandard's reader closed nothing): an unclosed file was a ResourceWarning, printed as a note before every error
about a compressed trace."""

import gc
import gzip
import warnings

import pytest

from cachesim.readers._base import open_text


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_closing_the_reader_closes_the_file(tmp_path, codec):
    data = b'{"timestamp": 0, "input_length": 10, "output_length": 1, "hash_ids": [1]}\n'
    path = tmp_path / f"t.jsonl.{codec}"
    if codec == "gzip":
        path.write_bytes(gzip.compress(data))
    else:
        zstandard = pytest.importorskip("zstandard", reason="zstd traces need the zstandard package (formats extra)")
        path.write_bytes(zstandard.ZstdCompressor().compress(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with open_text(path) as handle:
            assert handle.read() == data
        del handle   # the last reference: a file left open is reported as it is collected
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
