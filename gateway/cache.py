"""Answers already given, so the same photo is not sent to the model twice.

A small in-memory LRU per worker process, keyed by the image's SHA-256, the
model version and ``top_k``. The version is the one that matters and the
one the gateway cannot know before asking: TF Serving answers with its
newest version, which can change at any time. So the cache remembers the
version last seen answering a Predict call, and trusts it only for
``CACHE_VERSION_TTL_SECONDS``; once that is older, a look-up misses, the
request goes to the model, and its answer tells the version again. When it
changes, entries of other versions stop matching and are dropped.

Note:
    Each gunicorn worker has its own cache, so a photo may be sent to the
    model once per worker. A shared cache (Redis, memcached) would lift
    that, at the price of another service.
"""

import collections
import threading
import time


class AnswerCache:
    """An LRU of classification answers, safe to use from many threads.

    Args:
        max_entries: the most answers kept; 0 keeps none.
        version_ttl: seconds the version last seen answering is trusted.
        clock: a monotonic clock in seconds. Defaults to ``time.monotonic``.
    """

    def __init__(self, max_entries, version_ttl, clock=time.monotonic):
        self.max_entries = max_entries
        self.version_ttl = version_ttl
        self._clock = clock
        self._entries = collections.OrderedDict()
        self._lock = threading.Lock()
        self._version = None
        self._version_seen = 0.0

    def current_version(self):
        """Returns the model version to look up, or None when unsure."""
        with self._lock:
            if self._version is None:
                return None
            if self._clock() - self._version_seen > self.version_ttl:
                return None
            return self._version

    def saw_version(self, version):
        """Records that the model answered with ``version`` just now."""
        with self._lock:
            if version != self._version:
                stale = [key for key in self._entries if key[1] != version]
                for key in stale:
                    del self._entries[key]
            self._version = version
            self._version_seen = self._clock()

    def get(self, sha256, top_k):
        """Returns the stored answer for the image, or None.

        Args:
            sha256: hex digest of the image's bytes.
            top_k: the number of classes asked for.

        Returns:
            The value given to ``put``, or None on a miss (also when the
            version is unsure or the cache is off).
        """
        version = self.current_version()
        if version is None or self.max_entries <= 0:
            return None
        key = (sha256, version, top_k)
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)

        return value

    def put(self, sha256, version, top_k, value):
        """Stores an answer the model gave with ``version``."""
        if self.max_entries <= 0:
            return
        key = (sha256, version, top_k)
        with self._lock:
            if version != self._version:
                return
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self):
        with self._lock:
            return len(self._entries)
