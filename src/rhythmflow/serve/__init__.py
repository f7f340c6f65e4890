"""``rhythmflow serve`` / ``rhythmflow worker``: HTTP API + page, a durable job queue, workers.

The HTTP process (:mod:`.app`) validates a request, stores it in the job table (:mod:`.store`,
the source of truth for status, progress, history and cancel) and puts the job id on a Huey queue
(:mod:`.queue`); it never imports torch. A worker (:mod:`.worker`) keeps the model loaded, claims
a job with a lease, heartbeats, saves the sampler state after every step and resumes from it on
the next attempt; a reaper requeues jobs whose worker stopped heartbeating.
"""
