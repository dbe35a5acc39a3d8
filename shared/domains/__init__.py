"""The API's domains: each module declares one `Domain` and exposes its Functions `bp`."""
