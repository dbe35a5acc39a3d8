"""`make bench`: the performance figures of issue 5, each a ratio measured side by side."""
