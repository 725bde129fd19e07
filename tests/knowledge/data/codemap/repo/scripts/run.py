# store is mentioned in a comment only: not an import of pkg/store.py
import pkg.api

pkg.api.handler(None)
