"""Loading models into Dask actors and serving them through proxy modules."""
