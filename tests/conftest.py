"""Every Ray a test starts listens on loopback only: Ray reads this before it is imported."""

from earlyphase.tune.connect import loopback_environment

loopback_environment()
