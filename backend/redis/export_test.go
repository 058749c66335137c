package redis

// KeySlot exposes keySlot to the tests.
var KeySlot = keySlot
