"""Every error the legacy consumer (``python manage.py async_command``) raises on purpose.

::

    LegacyConsumerError                      async_command cannot start or has to stop
    ├── RedisUnavailableError                Redis does not answer at start
    ├── RedisLostError                       Redis unreachable for longer than the retry window
    ├── ConsumerNameInUseError               another live consumer runs under this --consumer-name
    ├── HandlerNotFoundError (ValueError)    --handler / ASYNC_COMMAND_HANDLER names no async function
    └── ForwardTypesError (ValueError)       --forward-types names no type, or one that is not registered

``InvalidItemError`` (a ``ValueError``, not fatal) names what is wrong with one async_command item;
its text is the ``error`` of the item's dead letter.  So does ``TaskTypeNotAllowedError``, for an
item --forward would submit as a task type --forward-types does not allow.
``DeadLetterNotRequeueableError`` (a ``ValueError``) says why a dead letter cannot be put back on
its list (dead_letters.py): it keeps only part of its item, or is no letter at all.

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


class ForwardTypesError(LegacyConsumerError, ValueError):
    """--forward-types / ASYNC_COMMAND_FORWARD_TYPES is empty or names a task type no handler has."""


class InvalidItemError(ValueError):
    """An item taken from the list is not a JSON object; the message goes into its dead letter."""


class TaskTypeNotAllowedError(ValueError):
    """--forward would submit an item as a task type that --forward-types does not allow."""


class DeadLetterNotRequeueableError(ValueError):
    """A dead letter cannot be put back on its list; the message says why (nothing was written)."""
