"""The cache keeper: keeps a mirror's cache under a size limit by evicting whole images, least
recently pulled first, never the pinned ones, and fetches the pinned images into the cache.

It runs beside one registry (distribution 3.1.1) and shares its storage volume:

- `layout`: the registry's filesystem layout (`docker/registry/v2`: `repositories/<name>/
  _manifests/{revisions,tags}`, `_layers`, `blobs/sha256/<2>/<hex>/data`), read and written
  the way the registry itself does;
- `policy`: images (a root manifest with its child manifests, tags and blobs), their last use
  and the eviction plan (pure);
- `sweep`: removing an image's links, then reclaiming the blobs no kept image references,
  behind a time fence that protects whatever the registry is writing meanwhile;
- `seed`: pulling the pinned images through the registry's own API;
- `service`: the long-running process (pull notifications in, metrics out, the check loop).

Standard library only: it runs on a stock Python image with the files uploaded by the stack
(configs/cache.py), and under the tests' own interpreter.
"""
