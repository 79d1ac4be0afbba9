"""The example: the loan data generator and the local continuous-training round.

Replace this room with your own data; nothing else imports it, and it may
import every other room.
"""
