/** Reading BER (X.690, definite lengths only) in place, as the LDAP messages Roster decodes itself need. */

/** A cursor over definite-length BER; `enter` checks the tag and returns where the element ends. */
export class BerReader {
  /** Reads bytes [at, end) of `buffer`: one message of the chunk that brought it. */
  constructor(
    readonly buffer: Buffer,
    public at: number,
    readonly end: number,
  ) {}

  tag(): number | undefined {
    return this.at < this.end ? this.buffer[this.at] : undefined;
  }

  enter(tag: number): number {
    const buf = this.buffer;
    if (this.tag() !== tag) throw new RangeError(`expected tag 0x${tag.toString(16)} at ${this.at}`);
    let at = this.at + 1;
    // The header itself must lie inside the message, or its bytes would be read from elsewhere.
    if (at >= this.end) throw new RangeError(`element at ${this.at} has no length`);
    const first = buf[at] as number;
    at += 1;
    let length = first;
    if (first >= 0x80) {
      const octets = first & 0x7f;
      if (octets === 0 || octets > 4) throw new RangeError(`unsupported length at ${this.at}`);
      if (at + octets > this.end) throw new RangeError(`element at ${this.at} has a cut-off length`);
      length = 0;
      for (let i = 0; i < octets; i += 1) length = length * 256 + (buf[at + i] as number);
      at += octets;
    }
    const end = at + length;
    if (end > this.end) throw new RangeError(`element at ${this.at} overruns the message`);
    this.at = at;
    return end;
  }
}
