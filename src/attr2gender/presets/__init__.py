"""The presets that ship with attr2gender: `attr2gender presets` lists them, `attr2gender presets show NAME` prints one."""
