"""healthbook's transforms: the stages of the nightly run (see docs/ARCHITECTURE.md)."""

import os

# Arrow's allocator for every process that imports healthbook before pyarrow (the CLI, the DAG's
# tasks, the ingest pool's workers): the C library's malloc, not Arrow's default mimalloc, which
# keeps freed memory mapped. On the 100k-encounter night the ingest's peak RSS (parent and
# workers summed) fell from 652 to 521 MB, and from 476 to 388 MB at 10k
# (benchmarks/results/ingest_throughput.md). An operator's own ARROW_DEFAULT_MEMORY_POOL wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
