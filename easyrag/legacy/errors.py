"""Every error the legacy consumer (``python manage.py async_command``) raises on purpose.

::

    LegacyConsumerError                      async_command cannot start or has to stop
    ├── RedisUnavailableError                Redis does not answer at start
    ├── RedisLostError                       Redis unreachable for longer than the retry window
    ├── ConsumerNameInUseError               another live consumer runs under this --consumer-name
    └── HandlerNotFoundError (ValueError)    --handler / ASYNC_COMMAND_HANDLER names no async function

``InvalidItemError`` (a ``ValueError``, not fatal) names what is wrong with one async_command item;
its text is the ``error`` of the item's dead letter.

The consumer stands apart from the task layer, so these do not derive from its
``TaskFrameworkError``; the errors of a --forward submission are the facade's own.
"""

from __future__ import annotations


class LegacyConsumerError(Exception):
    """The consumer cannot start, or has to stop; the message is the one line the command prints."""


class RedisUnavailableError(LegacyConsumerError):
    """Redis did not answer when the consumer started."""


class RedisLostError(LegacyConsumerError):
    """Redis stayed unreachable for longer than the retry window while the consumer ran."""


class ConsumerNameInUseError(LegacyConsumerError):
    """Another live consumer holds this consumer name (and so its processing list)."""


class HandlerNotFoundError(LegacyConsumerError, ValueError):
    """The dotted path of --handler / ASYNC_COMMAND_HANDLER names no ``async def`` function."""


class InvalidItemError(ValueError):
    """An item taken from the list is not a JSON object; the message goes into its dead letter."""
