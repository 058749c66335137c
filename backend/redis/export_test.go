package redis

// KeySlot exposes keySlot to the tests.
var KeySlot = keySlot

// OpScript exposes the store's script to the tests.
const OpScript = opScript
