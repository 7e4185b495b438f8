"""Both ends of every protocol between supervisor, zygote and worker: the JSON-lines messages
(typed, versioned), the zygote's fork protocol, and the supervisor's handle on one worker.

May import: the bottom layer only (`errors`, `linux`, ...); worker code only by name, in the forked child.
"""
