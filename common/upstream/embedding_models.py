"""What each DashScope text-embedding model accepts (dashscope-protocol-2.md section 4)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class EmbeddingModel:
    default_dimension: int
    dimensions: tuple[int, ...]  # the values `dimension` may take (section 4.1)
    max_rows: int  # texts per request (section 4.2: 10 passes, 11 fails on v3/v4)
    max_tokens_per_row: int  # DashScope counts them (its tokenizer); it refuses longer rows
    # v1/v2 have one fixed size and take no `dimension` parameter.
    takes_dimension: bool = True


EMBEDDING_MODELS: dict[str, EmbeddingModel] = {
    "text-embedding-v4": EmbeddingModel(1024, (2048, 1536, 1024, 768, 512, 256, 128, 64),
                                        10, 8192),
    "text-embedding-v3": EmbeddingModel(1024, (1024, 768, 512, 256, 128, 64), 10, 8192),
    "text-embedding-v2": EmbeddingModel(1536, (1536,), 25, 2048, takes_dimension=False),
    "text-embedding-v1": EmbeddingModel(1536, (1536,), 25, 2048, takes_dimension=False),
}
