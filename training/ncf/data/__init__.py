"""Data: read interactions and item features, split them, write and read the prepared channels.

prepare.py runs the first half (`interactions`, `item_sources`, `features`, `splitting`, `channels`);
train.py the second (`training_data`: the channels as index arrays, `heldout`, `vocab`). TensorFlow-free.
"""
