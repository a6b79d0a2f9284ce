"""The decode loop: a conversation's prompt and cache, verification steps, their stats."""
