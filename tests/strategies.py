"""The suite's strategies are the public ones (cachesim.testing), so users test their policies the same way."""

from cachesim.testing import cache_configs, chain_keys, prompts, token_request_streams

__all__ = ["cache_configs", "chain_keys", "prompts", "token_request_streams"]
