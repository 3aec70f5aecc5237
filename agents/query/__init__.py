"""The query agent: DuckDB SQL over a tenant's Parquet, served over gRPC (``floe.v1.QueryService``)."""
