// Incremental server-sent events: feed decoded text, get the `data` of each complete event.
export class SseParser {
  constructor() {
    this.pending = "";
    this.data = [];
  }

  feed(text) {
    this.pending += text;
    const events = [];
    let newline;
    while ((newline = this.pending.search(/\r\n|\r|\n/)) >= 0) {
      const line = this.pending.slice(0, newline);
      const width = this.pending.startsWith("\r\n", newline) ? 2 : 1;
      if (this.pending[newline] === "\r" && newline + 1 === this.pending.length) break; // maybe \r\n
      this.pending = this.pending.slice(newline + width);
      if (line === "") {
        if (this.data.length) events.push(this.data.join("\n"));
        this.data = [];
      } else if (line.startsWith("data:")) {
        this.data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
      }
      // comments (":...") and other fields (event, id, retry) are not used by this API
    }
    return events;
  }
}
