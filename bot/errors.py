"""Domain errors the engine raises; adapters show `message` privately to the player.

Raising rolls the transaction back, so nothing is written for a rejected action.
"""


class QuizError(Exception):
    message = "Something went wrong."

    def __init__(self, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(self.message)


class NotYourSession(QuizError):
    message = "This is not your challenge. Start your own with `/mldebt challenge`."


class SessionNotFound(QuizError):
    message = "That quiz no longer exists. Start a new one with `/mldebt challenge`."


class SessionClosed(QuizError):
    message = "That quiz has already ended."


class QuestionClosed(QuizError):
    message = "That question is already closed; answer the current one."


class NoAttemptsLeft(QuizError):
    message = "You have no attempts left on this question."


class AlreadyTried(QuizError):
    """A letter the player already tried on this question: refused without using an attempt."""

    message = "You already tried that letter on this question; pick another one."


class UnknownChoice(QuizError):
    message = "Pick one of A, B, C or D."


class NoActiveSession(QuizError):
    message = "You have no quiz in progress. Start one with `challenge`, `practice` or `test`."


class BadRequest(QuizError):
    """The command itself is malformed (unknown topic, bad difficulty...)."""


class Busy(QuizError):
    message = "The quiz database is busy right now; please try again in a moment."
