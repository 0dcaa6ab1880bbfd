"""Where corpora come from: a registry declared as data, and one fetcher per kind."""
