// The page's state: who is signed in, the event stream, the call on screen.
export const app = {
  token: null,
  user: null,
  device: null,
  config: { iceTransportPolicy: "all", devUsers: null, media: "caller-choice" },
  source: null,
  lastEventId: null,
  reconnectTimer: null,
  reconnectDelay: 1000,
  call: null,          // the call on screen
  earlySignals: new Map(), // callId -> signals that arrived before the call did
  earlyEvents: [], // call.ringing/accepted/ended that arrived while this page's invite was still in flight
  statsTimer: null,
  elsewhere: null, // {info, role}: a call of this user's going on without this page (views.showElsewhere)
  rejoinChecked: false,
  session: 0, // counts sign-ins and sign-outs: work begun for one session drops its results in another
  reloadSeen: false, // whether a sign-in already acted on this page having been reloaded // whether this sign-in looked for a call to rejoin (after a reload)
};
