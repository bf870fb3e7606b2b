"""`taxi-demand report`: one static HTML page from ML Metadata, the warehouse
and the served log (`data` gathers, `plots` draws, `page` writes)."""
