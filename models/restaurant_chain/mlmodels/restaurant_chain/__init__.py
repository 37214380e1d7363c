"""The example tenant's data source (a restaurant chain): raw table declarations (:mod:`.tables`)
and the deterministic example-data generator (:mod:`.datagen`) that `make run` and the tests use."""
